"""Counting SQL round trips with SQLAlchemy events: statements by verb, transactions and pool
checkouts. `round_trips` is what PostgreSQL sees: each statement, plus the BEGIN and the
COMMIT (or ROLLBACK) of each transaction; a statement on an autocommit connection (the
transition functions, runqueue/store/functions.py) is one round trip and no transaction."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.pool import Pool


class SqlCounter:
    """Counts what every engine of this process sends, while installed."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def _statement(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        self.counts[verb] += 1
        self.counts["statements"] += 1
        self.counts["round_trips"] += 1

    def _commit(self, conn: Any) -> None:
        self._ended(conn)

    def _rollback(self, conn: Any) -> None:
        if self._ended(conn):
            self.counts["rollbacks"] += 1

    def _ended(self, conn: Any) -> bool:
        """A transaction ended: its BEGIN and its COMMIT or ROLLBACK were round trips too.
        Not on an autocommit connection, where there was none."""
        if getattr(conn.connection.driver_connection, "autocommit", False) is True:
            return False
        self.counts["transactions"] += 1
        self.counts["round_trips"] += 2
        return True

    def _checkout(self, *_: Any) -> None:
        self.counts["checkouts"] += 1

    def install(self) -> SqlCounter:
        event.listen(Engine, "before_cursor_execute", self._statement)
        event.listen(Engine, "commit", self._commit)
        event.listen(Engine, "rollback", self._rollback)
        event.listen(Pool, "checkout", self._checkout)
        return self

    def remove(self) -> None:
        event.remove(Engine, "before_cursor_execute", self._statement)
        event.remove(Engine, "commit", self._commit)
        event.remove(Engine, "rollback", self._rollback)
        event.remove(Pool, "checkout", self._checkout)

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)


def install_worker_counting(directory: str) -> None:
    """In each pool child: count, and write the counts after every task (task_postrun runs
    after task_success, so the final-status transaction is included)."""
    from celery import signals

    counter = SqlCounter().install()
    path = Path(directory)

    @signals.task_postrun.connect(weak=False)
    def _dump(**_: Any) -> None:
        counter.counts["tasks"] += 1
        target = path / f"sql-{os.getpid()}.json"
        temporary = target.with_suffix(".tmp")
        temporary.write_text(json.dumps(counter.snapshot()))
        temporary.replace(target)


def read_worker_counts(directory: Path) -> Counter[str]:
    """The sum over every pool child that has run a task."""
    total: Counter[str] = Counter()
    for file in directory.glob("sql-*.json"):
        try:
            total.update(json.loads(file.read_text()))
        except (OSError, ValueError):
            continue
    return total


def difference(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {key: after.get(key, 0) - before.get(key, 0) for key in after}
