"""The runqueue worker app of the benchmarks: the stock `workers.app` assistants plus the
benchmark ones. With RUNQUEUE_BENCH_SQL_DIR set, every pool child counts its SQL statements
and transactions and writes them to that directory after each task (scenario 6)."""

import os

from benchmarks.tasks import register_bench_assistants
from runqueue import create_app
from workers.assistants import register_with_journal

app = create_app(name="benchmarks")
register_with_journal(app)
register_bench_assistants(app)

if os.environ.get("RUNQUEUE_BENCH_SQL_DIR"):
    from benchmarks.sqlcount import install_worker_counting

    install_worker_counting(os.environ["RUNQUEUE_BENCH_SQL_DIR"])
