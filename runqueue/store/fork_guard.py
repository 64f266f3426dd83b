"""No fork while this process is inside a SQLite transaction.

SQLite keeps the locks of a process's connections in bookkeeping of that process. A child
forked while another thread of its parent held the write lock inherits that bookkeeping: in
the child, SQLite believes one of the child's own connections holds the lock, and every write
the child attempts fails "database is locked", for as long as it lives (SQLite's "How To
Corrupt", section 2.6: carrying an open connection across fork()). The main process of an
embedded worker writes to SQLite (relay, reaper, workers table) while its pool forks new
children: about one replacement child in a hundred was born unable to claim a run, and the
run it had taken waited for the relay (republish_after).

So every SQLite transaction of a process is counted from its BEGIN until its connection goes
back to the pool; os.fork() waits until none is open, and new ones wait for the fork.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, event

logger = logging.getLogger(__name__)

FORK_WAIT_SECONDS = 5.0  # a fork waits at most this long for open transactions, then warns
_ENTERED = "runqueue_fork_guard"  # connection record info: the thread that entered


class ForkGate:
    """Transactions enter and leave; a fork waits for those of other threads to leave."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._open: dict[int, int] = {}  # thread ident -> open transactions
        self._forker: int | None = None  # the thread forking now

    def enter(self) -> int:
        me = threading.get_ident()
        with self._condition:
            while self._forker is not None and self._forker != me:
                self._condition.wait()
            self._open[me] = self._open.get(me, 0) + 1
        return me

    def leave(self, thread: int) -> None:
        with self._condition:
            left = self._open.get(thread, 0) - 1
            if left > 0:
                self._open[thread] = left
            else:
                self._open.pop(thread, None)
            self._condition.notify_all()

    def before_fork(self) -> None:
        me = threading.get_ident()
        deadline = time.monotonic() + FORK_WAIT_SECONDS
        with self._condition:
            self._forker = me
            while any(thread != me for thread in self._open):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    logger.warning(
                        "forking while a SQLite transaction is open (waited %.0f s): the "
                        "child may be unable to write",
                        FORK_WAIT_SECONDS,
                    )
                    return
                self._condition.wait(remaining)

    def after_fork_in_parent(self) -> None:
        with self._condition:
            self._forker = None
            self._condition.notify_all()

    def after_fork_in_child(self) -> None:
        # Another thread of the parent may have held the condition's lock: start afresh. The
        # child's only thread is the one that forked, and its engines are new (database.py).
        self.__init__()


_gate = ForkGate()
os.register_at_fork(
    before=lambda: _gate.before_fork(),
    after_in_parent=lambda: _gate.after_fork_in_parent(),
    after_in_child=lambda: _gate.after_fork_in_child(),
)


def guard(engine: Engine) -> None:
    """Count this SQLite engine's transactions, so that no fork happens inside one."""
    # insert=True: before the engine's own begin listener takes the write lock.
    event.listen(engine, "begin", _on_begin, insert=True)
    event.listen(engine, "checkin", _on_checkin)
    event.listen(engine, "invalidate", _on_invalidate)


def _on_begin(connection: Any) -> None:
    info = connection.info  # the pooled connection's: its checkin sees the same dict
    if _ENTERED not in info:
        info[_ENTERED] = _gate.enter()


def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
    thread = record.info.pop(_ENTERED, None)
    if thread is not None:
        _gate.leave(thread)


def _on_invalidate(_dbapi_connection: Any, record: Any, _exception: Any) -> None:
    _on_checkin(_dbapi_connection, record)


@contextlib.contextmanager
def no_fork() -> Iterator[None]:
    """A transaction SQLAlchemy does not see (a library's own BEGIN on the driver connection,
    as the official SqliteStore's sweep): counted as the engine's are, so no fork inside it."""
    thread = _gate.enter()
    try:
        yield
    finally:
        _gate.leave(thread)
