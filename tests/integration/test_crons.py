"""Crons on both backends: the catch-up policy (a store-level pass, no worker), end_time and
enabled=false stopping fires, a busy thread's fire following reject and enqueue, and the
thread of a stateless fire deleted or kept, with real workers whose schedulers look every
0.2 s. Each fire is asserted from the fire rows and from the runs it made. The race of three
schedulers with a SIGKILL is tests/faults/test_cron_race.py; the HTTP API and the official
clients, tests/integration/test_api_crons.py."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from runqueue import RunStatus
from runqueue.errors import (
    CronNotFoundError,
    InvalidPayloadError,
    ThreadNotFoundError,
    UnknownAssistantError,
)
from runqueue.worker.cron_scheduler import fire_due
from tests.support import checkout_path, run_cli, settings_env, wait_until

pytestmark = pytest.mark.integration

EVERY_SECOND = "* * * * * *"  # croniter: a sixth field is seconds
FAST = {"extra_env": {"RUNQUEUE_CRON_INTERVAL": "0.2"}}


def db_now(manager) -> datetime:  # noqa: ANN001
    with manager.store.transaction() as conn:
        value = conn.execute(text("SELECT CURRENT_TIMESTAMP")).scalar_one()
    value = datetime.fromisoformat(value) if isinstance(value, str) else value
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def set_next_tick(manager, cron_id: str, when: datetime) -> None:  # noqa: ANN001
    """Move a cron's next tick into the past: a scheduler that was down that long."""
    value = when if manager.store.engine.dialect.name == "postgresql" else when.replace(tzinfo=None)
    with manager.store.transaction() as conn:
        conn.execute(
            text("UPDATE crons SET next_fire_at = :t WHERE cron_id = :c"),
            {"t": value, "c": cron_id},
        )


def test_the_catch_up_policy_fires_the_latest_missed_tick_once(manager) -> None:  # noqa: ANN001
    cron = manager.create_cron("noop", schedule=EVERY_SECOND, on_run_completed="keep")
    try:
        # Within the misfire grace (60 s): every missed tick fires, one by one.
        start = db_now(manager)
        set_next_tick(manager, cron.cron_id, start.replace(microsecond=0) - timedelta(seconds=5))
        fires = fire_due(manager.app, manager.runtime)
        ticks = sorted(fire.tick for fire in fires)
        assert len(ticks) >= 6, ticks
        assert all(b - a == timedelta(seconds=1) for a, b in zip(ticks, ticks[1:], strict=False))
        # Down for an hour: the 3600 missed ticks collapse into the latest one, fired once
        # (a second later, so that it is not one of the ticks just fired).
        time.sleep(1.1)
        set_next_tick(manager, cron.cron_id, start - timedelta(hours=1))
        fires = fire_due(manager.app, manager.runtime)
        after = db_now(manager)
        assert len(fires) == 1, fires
        assert after - timedelta(seconds=2) <= fires[0].tick <= after
        assert fires[0].run_id is not None and manager.get(fires[0].run_id) is not None
        assert manager.cron_of_run(fires[0].run_id).cron_id == cron.cron_id
        assert manager.get_cron(cron.cron_id).next_run_date == fires[0].tick + timedelta(seconds=1)
        assert len(manager.cron_fires(cron.cron_id, limit=1000)) == len(ticks) + 1
    finally:
        manager.delete_cron(cron.cron_id)


def test_bad_crons_are_refused_with_typed_errors(manager) -> None:  # noqa: ANN001
    with pytest.raises(InvalidPayloadError, match="invalid cron schedule"):
        manager.create_cron("noop", schedule="every minute")
    with pytest.raises(InvalidPayloadError, match="timezone"):
        manager.create_cron("noop", schedule="* * * * *", timezone="Mars/Olympus")
    with pytest.raises(UnknownAssistantError):
        manager.create_cron("no-such-assistant", schedule="* * * * *")
    with pytest.raises(ThreadNotFoundError):
        manager.create_cron("noop", schedule="* * * * *", thread_id="no-such-thread")
    thread = manager.create_thread(f"cron-{uuid.uuid4().hex[:8]}", user_id="alice").thread_id
    with pytest.raises(ThreadNotFoundError):  # another user's thread
        manager.create_cron("noop", schedule="* * * * *", thread_id=thread, user_id="bob")
    with pytest.raises(InvalidPayloadError, match="on_run_completed"):
        manager.create_cron("noop", schedule="* * * * *", thread_id=thread, on_run_completed="keep")
    with pytest.raises(CronNotFoundError):
        manager.update_cron(str(uuid.uuid4()), enabled=False)
    cron = manager.create_cron(
        "noop", schedule="0 9 * * *", timezone="Europe/Paris", user_id="alice"
    )
    assert manager.get_cron(cron.cron_id, user_id="bob") is None
    assert cron.cron_id not in [c.cron_id for c in manager.search_crons(user_id="bob")]
    with pytest.raises(CronNotFoundError):
        manager.delete_cron(cron.cron_id, user_id="bob")
    assert cron.next_run_date.astimezone(UTC).hour in (7, 8)  # 9:00 in Paris, in UTC
    manager.delete_cron(cron.cron_id, user_id="alice")
    assert manager.get_cron(cron.cron_id) is None


def test_end_time_and_enabled_false_stop_fires(manager, start_worker) -> None:  # noqa: ANN001
    start_worker(**FAST)
    end = db_now(manager) + timedelta(seconds=2.5)
    ending = manager.create_cron(
        "noop", schedule=EVERY_SECOND, end_time=end, on_run_completed="keep"
    )
    stopping = manager.create_cron("noop", schedule=EVERY_SECOND, on_run_completed="keep")
    try:
        wait_until(lambda: len(manager.cron_fires(stopping.cron_id)) >= 2, timeout=20)
        disabled = manager.update_cron(stopping.cron_id, enabled=False)
        fired_before = manager.cron_fires(stopping.cron_id, limit=1000)
        wait_until(lambda: manager.get_cron(ending.cron_id).next_run_date is None, timeout=20)
        time.sleep(2.0)  # ten scheduler passes: nothing more may fire
        ended = manager.cron_fires(ending.cron_id, limit=1000)
        assert ended and all(fire.tick <= end for fire in ended), (end, ended)
        assert max(fire.tick for fire in ended) >= end - timedelta(seconds=1)
        assert manager.cron_fires(stopping.cron_id, limit=1000) == fired_before
        assert all(fire.fired_at <= disabled.updated_at for fire in fired_before)
        for fire in ended + fired_before:  # each fire made its run, and the run ran
            run = manager.join(fire.run_id, timeout=30)
            assert run.status is RunStatus.success
            assert manager.cron_of_run(run.run_id).tick == fire.tick
    finally:
        manager.delete_cron(ending.cron_id)
        manager.delete_cron(stopping.cron_id)


def busy_thread(manager, seconds: float) -> tuple[str, str]:  # noqa: ANN001
    """A new thread with a `steps` run that keeps it busy about that long."""
    thread = f"cron-busy-{uuid.uuid4().hex[:8]}"
    run = manager.create_or_reject(
        thread, "steps", kwargs={"steps": int(seconds * 10), "delay": 0.1}
    )
    wait_until(lambda: manager.get(run.run_id).status is RunStatus.running, timeout=30)
    return thread, run.run_id


def test_a_busy_threads_fire_follows_reject_and_enqueue(manager, start_worker) -> None:  # noqa: ANN001
    start_worker(**FAST)
    rejecting, first = busy_thread(manager, 3.0)
    reject = manager.create_cron(
        "noop", schedule=EVERY_SECOND, thread_id=rejecting, multitask_strategy="reject"
    )
    enqueuing, second = busy_thread(manager, 3.0)
    enqueue = manager.create_cron(
        "noop", schedule=EVERY_SECOND, thread_id=enqueuing, multitask_strategy="enqueue"
    )
    try:
        wait_until(lambda: len(manager.cron_fires(enqueue.cron_id)) >= 2, timeout=20)
        wait_until(lambda: len(manager.cron_fires(reject.cron_id)) >= 2, timeout=20)
        manager.update_cron(reject.cron_id, enabled=False)
        manager.update_cron(enqueue.cron_id, enabled=False)
        # reject: while the thread was busy each fire was refused, and no run was made.
        refused = fired_while_busy(manager, reject.cron_id, first)
        assert refused and all(f.outcome == "refused" and f.run_id is None for f in refused)
        assert all("already has an active run" in f.detail for f in refused)
        made = {run.run_id for run in manager.list_by_thread(rejecting)} - {first}
        fired = {f.run_id for f in manager.cron_fires(reject.cron_id, limit=100) if f.run_id}
        assert made == fired  # runs only from fires after the thread was free
        # enqueue: each fire made a run, held behind the busy one, run after it, in order.
        queued = fired_while_busy(manager, enqueue.cron_id, second)
        assert queued and all(f.outcome == "created" for f in queued)
        runs = [manager.join(f.run_id, timeout=60) for f in sorted(queued, key=lambda f: f.tick)]
        assert all(run.status is RunStatus.success for run in runs)
        assert all(run.started_at >= manager.get(second).ended_at for run in runs)
        starts = [run.started_at for run in runs]
        assert starts == sorted(starts)
    finally:
        manager.delete_cron(reject.cron_id)
        manager.delete_cron(enqueue.cron_id)


def fired_while_busy(manager, cron_id: str, run_id: str) -> list:  # noqa: ANN001
    """The cron's fires made while the busy run surely still ran (half a second before its
    end: a fire waits for the thread's lock, which the run's end may hold)."""
    run = wait_until(lambda: manager.get(run_id) if manager.get(run_id).ended_at else None, 60)
    before = run.ended_at - timedelta(seconds=0.5)
    return [f for f in manager.cron_fires(cron_id, limit=100) if f.fired_at < before]


def test_a_stateless_fires_thread_is_deleted_or_kept(manager, start_worker) -> None:  # noqa: ANN001
    start_worker(**FAST)
    deleting = manager.create_cron("echo", schedule=EVERY_SECOND, kwargs={"n": 1})
    keeping = manager.create_cron(
        "echo", schedule=EVERY_SECOND, kwargs={"n": 2}, on_run_completed="keep"
    )
    try:
        wait_until(lambda: len(manager.cron_fires(keeping.cron_id)) >= 2, timeout=20)
        manager.update_cron(deleting.cron_id, enabled=False)
        manager.update_cron(keeping.cron_id, enabled=False)
        kept = manager.cron_fires(keeping.cron_id, limit=100)
        for fire in kept:
            assert manager.join(fire.run_id, timeout=30).result["echo"] == {"n": 2}
            assert manager.get_thread(fire.thread_id) is not None
        deleted = manager.cron_fires(deleting.cron_id, limit=100)
        assert deleted
        wait_until(
            lambda: all(manager.get_thread(f.thread_id) is None for f in deleted),
            timeout=30,
            message="the delete cron's threads deleted",
        )
        assert all(manager.get(f.run_id) is None for f in deleted)  # the run went with it
    finally:
        manager.delete_cron(deleting.cron_id)
        manager.delete_cron(keeping.cron_id)


def test_deleting_a_thread_deletes_its_crons(manager) -> None:  # noqa: ANN001
    thread = manager.create_thread(f"cron-gone-{uuid.uuid4().hex[:8]}").thread_id
    cron = manager.create_cron("noop", schedule=EVERY_SECOND, thread_id=thread)
    fire = wait_until(lambda: fire_due(manager.app, manager.runtime), timeout=5)[0]
    manager.cancel(fire.run_id)
    manager.delete_thread(thread)
    assert manager.get_cron(cron.cron_id) is None
    assert manager.cron_fires(cron.cron_id) == []
    time.sleep(1.1)
    assert fire_due(manager.app, manager.runtime) == []


def test_the_cli_lists_crons_with_next_fires_and_show_names_a_runs_cron(backend, manager) -> None:  # noqa: ANN001
    if backend.name != "embedded":  # the commands call the same registry on both: one is enough
        pytest.skip("the CLI's cron commands run on the embedded backend (20 s a backend)")
    # A wide terminal: Rich wraps and shortens to 80 columns otherwise.
    env = settings_env(backend.settings) | checkout_path() | {"COLUMNS": "200"}
    made = run_cli(env, "crons", "create", "echo", "* * * * * *", "--kwargs", '{"n": 3}',
                   "--on-run-completed", "keep")  # fmt: skip
    assert made.returncode == 0, made.stderr
    cron_id = made.stdout.split()[0]
    try:
        fire = wait_until(lambda: fire_due(manager.app, manager.runtime), timeout=5)[0]
        listed = run_cli(env, "crons", "--json")
        assert listed.returncode == 0, listed.stderr
        (entry,) = [e for e in json.loads(listed.stdout) if e["cron"]["cron_id"] == cron_id]
        assert entry["latest_fire"]["run_id"] == fire.run_id
        assert datetime.fromisoformat(entry["cron"]["next_run_date"]) > fire.tick
        table = run_cli(env, "crons")
        assert cron_id in table.stdout and "next fire (UTC)" in table.stdout
        shown = run_cli(env, "show", fire.run_id)
        assert f"fired by cron {cron_id} at its tick {fire.tick.isoformat()}" in shown.stdout
        assert run_cli(env, "crons", "disable", cron_id).returncode == 0
        assert manager.get_cron(cron_id).enabled is False
        bad = run_cli(env, "crons", "create", "echo", "not a schedule")
        assert bad.returncode == 1 and bad.stderr.startswith("error: invalid cron schedule")
        assert len(bad.stderr.strip().splitlines()) == 1
    finally:
        assert run_cli(env, "crons", "delete", cron_id).returncode == 0
    gone = run_cli(env, "crons", "delete", cron_id)
    assert gone.returncode == 1 and "not found" in gone.stderr
