"""The fleet in SQL, in-process on SQLite: workers register, heartbeat, stop and age out;
create() warns once about an assistant no live worker serves; why_pending explains."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from runqueue import RunStatus, Settings, SyncRunManager, create_app
from runqueue.store.database import migrate
from runqueue.store.models import WorkerRow
from runqueue.store.transactions import db_now_plus
from workers.assistants import register_with_journal


@pytest.fixture
def manager(tmp_path) -> SyncRunManager:  # noqa: ANN001
    settings = Settings(
        data_dir=tmp_path, heartbeat_interval=1.0, lease_seconds=4.0, fence_margin_seconds=1.0
    )
    migrate(settings)
    app = create_app(settings)
    register_with_journal(app)
    return SyncRunManager(app)


def _register(manager: SyncRunManager, name: str, assistants: list[str]) -> None:
    manager.store.register_worker(
        name, pool="prefork", concurrency=2, assistants=assistants, host="h", pid=1
    )


def _age(manager: SyncRunManager, name: str, seconds: float) -> None:
    with manager.store.transaction() as conn:
        conn.execute(
            update(WorkerRow)
            .where(WorkerRow.name == name)
            .values(heartbeat_at=db_now_plus(-seconds))
        )


def test_live_workers_are_registered_not_stopped_and_recently_heartbeated(manager):
    _register(manager, "a@h", ["echo", "steps"])
    _register(manager, "b@h", ["echo"])
    _register(manager, "c@h", ["echo"])
    assert [w.name for w in manager.workers()] == ["a@h", "b@h", "c@h"]
    assert manager.workers()[0].assistants == ["echo", "steps"]

    manager.store.stop_worker("b@h")
    _age(manager, "c@h", 5.0)  # older than a lease (4 s): its main process is gone
    assert [w.name for w in manager.workers()] == ["a@h"]
    assert manager.store.beat_worker("b@h") is False  # a stopped worker stays stopped
    assert manager.store.beat_worker("c@h") is True  # a late heartbeat: live again
    assert [w.name for w in manager.workers()] == ["a@h", "c@h"]
    _register(manager, "b@h", ["noop"])  # the same node name, restarted
    assert [w.assistants for w in manager.workers() if w.name == "b@h"] == [["noop"]]


def test_create_warns_once_about_an_assistant_no_live_worker_serves(manager, caplog):
    _register(manager, "a@h", ["echo"])
    with caplog.at_level(logging.WARNING, logger="runqueue.registry"):
        for n in range(3):
            manager.create(f"t-{n}", "echo")
            manager.create(f"u-{n}", "steps")
    warnings = [r.getMessage() for r in caplog.records if r.name == "runqueue.registry"]
    assert len(warnings) == 1
    assert warnings[0].startswith("no live worker serves assistant 'steps'")


def test_why_pending_names_the_holder_the_missing_worker_or_the_wait(manager):
    thread_id = f"t-{uuid.uuid4().hex[:6]}"
    first = manager.create_or_reject(thread_id, "steps")
    second = manager.create_or_reject(thread_id, "echo", multitask_strategy="enqueue")
    assert manager.why_pending(second.run_id) == (
        f"held behind run {first.run_id} (pending) of its thread {thread_id}"
    )
    assert manager.why_pending(first.run_id) == "no live worker serves assistant steps"

    _register(manager, "a@h", ["echo"])
    assert manager.why_pending(first.run_id) == (
        "no live worker serves assistant steps (live workers: a@h)"
    )
    assert manager.store.note_on_pending_run(first.run_id, "worker a@h does not serve steps")
    assert manager.events(first.run_id)[-1].detail == "worker a@h does not serve steps"

    _register(manager, "b@h", ["echo", "steps"])
    assert manager.why_pending(first.run_id) == (
        "waiting for a worker: 1 live worker(s) serve assistant steps (b@h); "
        "last: worker a@h does not serve steps"
    )
    manager.set_status(first.run_id, RunStatus.success)
    assert manager.why_pending(first.run_id) is None
    assert manager.store.note_on_pending_run(first.run_id, "late") is False
    assert manager.why_pending("not-a-run-id") is None


def _claimed(manager: SyncRunManager, worker: str) -> str:
    run = manager.create_or_reject(f"t-{uuid.uuid4().hex[:8]}", "echo")
    claim = manager.store.claim_run(run.run_id, worker, str(uuid.uuid4()), 30.0)
    assert claim.claimed
    return run.run_id


def test_a_worker_without_the_token_ends_only_the_runs_it_claimed(manager):
    """The main process ends a run its lost child ran (no token): fenced on the claim's
    worker, so a run handed back and claimed by another worker meanwhile is not touched."""
    run_id = _claimed(manager, "other@h")
    changed, _ = manager.store.finish_run(
        run_id, RunStatus.error, error="worker lost", claimed_by="stopping@h"
    )
    assert not changed and manager.get(run_id).status is RunStatus.running
    changed, _ = manager.store.finish_run(
        run_id, RunStatus.error, error="worker lost", claimed_by="other@h"
    )
    assert changed and manager.get(run_id).status is RunStatus.error


def test_a_discarded_run_is_noted_once_and_offered_again_within_minutes(manager):
    run = manager.create_or_reject(f"t-{uuid.uuid4().hex[:8]}", "echo")
    detail = "worker w@h does not serve assistant echo"
    for _ in range(3):
        assert manager.store.note_on_pending_run(run.run_id, detail, "w@h", discarded=True)
    notes = [e for e in manager.events(run.run_id) if e.detail == detail]
    assert len(notes) == 1
    with manager.store.reading() as conn:
        from sqlalchemy import select

        from runqueue.store.models import Run

        due = conn.execute(select(Run.next_publish_at).where(Run.run_id == run.run_id)).scalar()
    from runqueue.store.fleet import UNSERVED_REPUBLISH_MAX_SECONDS

    assert due.replace(tzinfo=None) <= (
        datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=UNSERVED_REPUBLISH_MAX_SECONDS)
    )


def test_a_stop_by_an_older_process_of_the_same_name_leaves_the_newer_live(manager):
    manager.store.register_worker(
        "w@h", pool="prefork", concurrency=1, assistants=["echo"], host="h", pid=2
    )
    manager.store.stop_worker("w@h", pid=1)  # the older process under that name
    assert [w.name for w in manager.workers()] == ["w@h"]
    manager.store.stop_worker("w@h", pid=2)
    assert manager.workers() == []


def test_rows_of_workers_gone_for_the_kept_time_are_forgotten(manager):
    """Each `runqueue worker` start is a row (its name carries the pid): the maintenance pass
    deletes the rows whose heartbeat is older than the kept time (a week; a live worker
    beats every few seconds, and one that finds its row gone registers again)."""
    _register(manager, "gone@h", ["echo"])
    manager.store.stop_worker("gone@h")
    _register(manager, "live@h", ["echo"])
    assert manager.store.forget_gone_workers(after_seconds=3600) == 0  # both beat just now
    time.sleep(0.05)
    assert manager.store.forget_gone_workers(after_seconds=0.01) == 2
    assert manager.store.forget_gone_workers(after_seconds=0.01) == 0
    _register(manager, "live@h", ["echo"])
    assert [worker.name for worker in manager.workers()] == ["live@h"]
