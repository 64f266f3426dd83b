"""The worker app of the Celery + database result backend peer: `celery -A
benchmarks.peer_celery_worker:app worker`, its settings and result backend from the
environment the benchmark gives it."""

import os

from benchmarks.peer_apps import RESULT_BACKEND_ENV, database_backend_app
from runqueue import Settings

app = database_backend_app(Settings.from_env(), os.environ[RESULT_BACKEND_ENV])
