"""A process forked while another thread of its parent writes to SQLite can still write
(runqueue.store.fork_guard): the fork waits for the transaction to end."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from runqueue.store import database, fork_guard

HOLD_SECONDS = 0.5


def fork_during_a_write(path: Path) -> tuple[str, float]:
    """Fork while another thread holds SQLite's write lock through a runqueue engine; the
    child then writes through a runqueue engine of its own. (child's outcome, fork waited)."""
    engine = database.get_engine(f"sqlite:///{path}")
    holding = threading.Event()

    def write() -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
            holding.set()
            time.sleep(HOLD_SECONDS)

    writer = threading.Thread(target=write)
    writer.start()
    assert holding.wait(10)
    read, write_end = os.pipe()
    began = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: report how its write went, and never return into pytest
        try:
            waited = time.monotonic() - began
            try:
                with database.get_engine(f"sqlite:///{path}").begin() as conn:
                    conn.execute(text("INSERT INTO t VALUES (2)"))
                outcome = "wrote"
            except Exception as exc:  # noqa: BLE001 - reported to the parent
                outcome = f"failed: {exc}".splitlines()[0]
            os.write(write_end, f"{outcome}|{waited}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    writer.join()
    reported = os.read(read, 4096).decode()
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0
    outcome, waited = reported.rsplit("|", 1)
    return outcome, float(waited)


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    path = tmp_path / "runs.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    yield path
    database.dispose_engines()


def test_a_fork_waits_for_the_open_write_and_the_child_can_write(sqlite_file):
    outcome, waited = fork_during_a_write(sqlite_file)
    assert outcome == "wrote"
    assert waited >= HOLD_SECONDS / 2  # the fork waited for the writer's commit


def test_without_the_guard_the_child_could_never_write(sqlite_file, monkeypatch):
    """What the guard prevents: SQLite in the child believes the parent's lock is its own."""
    monkeypatch.setattr(fork_guard._gate, "before_fork", lambda: None)
    monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT_MS", 1000)
    outcome, _ = fork_during_a_write(sqlite_file)
    assert outcome.startswith("failed") and "locked" in outcome
