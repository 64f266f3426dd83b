"""Self-fencing in-process, on SQLite: the fence's deadline and watchdog, the hard stop of a
pool child, and the check every write makes first, which a process resuming from a pause runs
before its watchdog thread does."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid

import pytest

from runqueue import Settings, SyncRunManager, create_app
from runqueue.errors import RunCancelledError, SettingsError
from runqueue.records import RunStatus
from runqueue.store.database import migrate
from runqueue.worker.fencing import (
    EXIT_LEASE_LOST,
    LeaseFence,
    LeaseLostError,
    Watchdog,
    clock,
)
from runqueue.worker.heartbeat import Heartbeat
from runqueue.worker.run_context import RunContext
from runqueue.worker.running import Execution
from runqueue.worker.stream_writer import StreamWriter
from workers.assistants import register_with_journal

LEASE, MARGIN = 0.6, 0.2  # deadline 0.4 s after the last renewal was sent; stop by 0.5 s


def _fence(
    sent_at: float | None = None,
    *,
    hard_stop: bool = False,
    run_id: str = "run-1",
    thread_id: str = "thread-1",
) -> LeaseFence:
    return LeaseFence(
        run_id,
        thread_id,
        lease_seconds=LEASE,
        margin_seconds=MARGIN,
        sent_at=clock() if sent_at is None else sent_at,
        hard_stop=hard_stop,
    )


def test_the_margin_is_a_setting_checked_against_the_heartbeat():
    settings = Settings.from_env({"RUNQUEUE_FENCE_MARGIN_SECONDS": "2.5"})
    assert settings.fence_margin_seconds == 2.5
    assert Settings().fence_margin_seconds == 5.0  # lease 30, heartbeat 10: fenced at 25 s
    for bad in (
        {"RUNQUEUE_FENCE_MARGIN_SECONDS": "0"},
        {"RUNQUEUE_FENCE_MARGIN_SECONDS": "-1"},
        # A run would stop itself before its first renewal: 10 >= 30 - 20.
        {"RUNQUEUE_FENCE_MARGIN_SECONDS": "20"},
        {"RUNQUEUE_LEASE_SECONDS": "12", "RUNQUEUE_HEARTBEAT_INTERVAL": "10"},
    ):
        with pytest.raises(SettingsError):
            Settings.from_env(bad)


def test_the_deadline_comes_before_the_lease_ends_and_moves_only_forward():
    sent = clock()
    fence = _fence(sent)
    assert fence.deadline == pytest.approx(sent + LEASE - MARGIN)
    assert fence.deadline < fence.stop_by < sent + LEASE
    fence.renewed(sent - 5)  # an older renewal's reply, late: changes nothing
    assert fence.deadline == pytest.approx(sent + LEASE - MARGIN)
    fence.renewed(sent + 1)
    assert fence.deadline == pytest.approx(sent + 1 + LEASE - MARGIN)
    assert not fence.expired()


def test_a_lost_lease_stays_lost_and_every_write_is_refused_first():
    fence = _fence(clock() - LEASE)  # as after a pause: past the deadline, no watchdog ran
    written = []
    with pytest.raises(LeaseLostError, match="lost its lease"):
        fence.guard(lambda: written.append(1))()
    assert written == []
    assert fence.expired() and "no lease renewal for 0.6s" in (fence.lost_reason or "")
    fence.renewed(clock())  # a renewal that succeeds afterwards does not undo the stop
    assert fence.expired()
    assert issubclass(LeaseLostError, RunCancelledError)  # unwinds as a cancel does


def test_the_watchdog_fires_at_the_deadline_once_and_a_renewal_postpones_it():
    fence = _fence()
    fired: list[float] = []
    watchdog = Watchdog(fence, on_fence=lambda: fired.append(clock()))
    started = clock()
    watchdog.start()
    time.sleep(0.25)
    fence.renewed(clock())  # pushes the deadline to ~0.65 s after the start
    watchdog.join(5)
    assert len(fired) == 1
    assert 0.6 <= fired[0] - started < 1.0
    assert fence.lost_reason is not None


def test_a_stopped_watchdog_never_fires():
    fence = _fence()
    fired: list[float] = []
    watchdog = Watchdog(fence, on_fence=lambda: fired.append(clock()))
    watchdog.start()
    watchdog.stop()
    watchdog.join(5)
    time.sleep(LEASE)
    assert fired == [] and fence.lost_reason is None


def _in_child(target) -> tuple[int, float]:  # noqa: ANN001
    """Run `target` in a forked process; its exit code and how long it lived."""
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            target()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), time.monotonic() - started


def test_a_pool_child_still_executing_at_the_lease_end_is_hard_stopped():
    """The child reports, through a pipe, when its fence counted from and when it called
    os._exit: no code of the run executes after that moment, which must come before the
    lease ends. (Measured from the parent, fork and waitpid add the time the kernel takes
    to create and to tear down a copy of a large test process: up to 0.4 s on a loaded
    machine, which this test once took for a late hard stop.)"""
    from runqueue.worker import fencing

    read_end, write_end = os.pipe()

    def child() -> None:
        os.close(read_end)
        fence = _fence(hard_stop=True)
        stop = fencing.hard_stop

        def reported_stop(fence: LeaseFence) -> None:
            os.write(write_end, f"{fence.renewed_at!r} {clock()!r}".encode())
            stop(fence)

        fencing.hard_stop = reported_stop
        # The fence's SIGTERM is ignored here, as by a run stuck where signals cannot reach.
        Watchdog(fence, on_fence=lambda: None).start()
        time.sleep(30)

    code, lived = _in_child(child)
    os.close(write_end)
    sent, stopped = (float(value) for value in os.read(read_end, 100).split())
    os.close(read_end)
    assert code == EXIT_LEASE_LOST and lived < 30
    assert LEASE - MARGIN <= stopped - sent < LEASE  # at stop_by: before the lease would end


def test_a_process_resuming_past_the_lease_end_exits_at_its_first_check():
    def child() -> None:
        _fence(clock() - 10, hard_stop=True).ensure()
        os._exit(0)  # not reached

    code, _lived = _in_child(child)
    assert code == EXIT_LEASE_LOST


@pytest.fixture
def manager(tmp_path) -> SyncRunManager:  # noqa: ANN001
    settings = Settings(
        data_dir=tmp_path, heartbeat_interval=0.05, lease_seconds=LEASE, fence_margin_seconds=MARGIN
    )
    migrate(settings)
    app = create_app(settings)
    register_with_journal(app)
    return SyncRunManager(app)


def _claimed(manager: SyncRunManager):  # noqa: ANN202
    """A run of `steps` claimed by this process, with its context; the fence counts from
    just before the claim was sent."""
    run = manager.create(f"fence-{uuid.uuid4().hex[:8]}", "steps")
    token = str(uuid.uuid4())
    sent_at = clock()
    claim = manager.store.claim_run(run.run_id, "test-worker", token, LEASE)
    assert claim.claimed
    fence = _fence(sent_at, run_id=run.run_id, thread_id=run.thread_id)
    execution = Execution(run.run_id, run.thread_id, token, fence=fence)
    stream = manager.runtime.stream
    writer = StreamWriter(
        stream,
        run_id=run.run_id,
        thread_id=run.thread_id,
        token=token,
        attempt=1,
        still_owner=lambda: True,
        write_timeout=1.0,
        fence=fence,
    )
    context = RunContext(
        run_id=run.run_id,
        thread_id=run.thread_id,
        assistant_id="steps",
        attempt=1,
        values=None,
        _store=manager.store,
        _stream=stream,
        _writer=writer,
        _execution=execution,
        _write_timeout=1.0,
    )
    return run, execution, writer, context


def test_a_resumed_process_writes_nothing_even_though_the_database_would_take_it(manager):
    run, execution, writer, context = _claimed(manager)
    writer.open()
    context.checkpoint({"n": 1})
    context.emit("tick", {"n": 1})
    assert writer.flush(5)

    # Paused past its deadline (the lease in the database is still this attempt's: no reaper
    # ran); its watchdog has not run again. Each cooperative check and write asks the fence.
    execution.fence._renewed_at -= LEASE  # noqa: SLF001 - the pause, without waiting it out
    assert manager.store.holds_run(run.run_id, execution.token)
    with pytest.raises(LeaseLostError):
        context.checkpoint({"n": 2})
    with pytest.raises(LeaseLostError):
        context.emit("tick", {"n": 2})
    with pytest.raises(LeaseLostError):
        context.raise_if_cancelled()
    assert context.cancelled()
    assert execution.terminating and not execution.abort_seen.is_set()  # not a cancel
    writer.close(0.0)
    assert [c.values for c in manager.checkpoints(run.thread_id)] == [{"n": 1}]
    assert _ticks(manager, run.run_id) == [1]
    assert manager.get(run.run_id).status is RunStatus.running  # the reaper decides


def test_events_queued_before_the_deadline_are_not_written_after_it(manager):
    """A batch already sent when the deadline passes may land (the store's own guard is for
    that); the batches after it are refused by the process, and the next emit raises."""
    run, execution, writer, context = _claimed(manager)
    gate = threading.Event()
    store_append = writer.stream.append

    class SlowStore:  # the stream's store answers the first append only after the deadline
        @staticmethod
        def append(*args, **kwargs):  # noqa: ANN002, ANN003, ANN205
            gate.wait(5)
            return store_append(*args, **kwargs)

    writer.open()
    writer.stream = SlowStore()
    context.emit("tick", {"n": 1})  # sent before the deadline
    time.sleep(0.05)
    context.emit("tick", {"n": 2})  # queued before the deadline, behind the slow batch
    context.emit("tick", {"n": 3})
    time.sleep(LEASE)
    gate.set()
    assert not writer.flush(2)
    with pytest.raises(LeaseLostError):
        context.emit("tick", {"n": 4})
    writer.close(0.0)
    writer.join(5)  # the batch in flight lands; nothing after it
    assert _ticks(manager, run.run_id) == [1]


def _ticks(manager: SyncRunManager, run_id: str) -> list[int]:
    """The `tick` events in a (running) run's stream, read without waiting for its end."""
    entries = manager.runtime.stream.transport.read(run_id, 0, block=0, count=1000)
    return [json.loads(entry.data)["n"] for entry in entries if entry.event == "tick"]


def test_renewals_keep_the_fence_away_and_a_reaped_run_is_fenced_at_once(manager):
    run, execution, writer, _context = _claimed(manager)
    heartbeat = Heartbeat(manager.store, execution, interval=0.05, lease=LEASE)
    heartbeat.start()
    time.sleep(LEASE * 2)
    assert not execution.lease_lost()  # renewed every 50 ms: never near the deadline

    # Another worker's reaper (or a later attempt) took the run: the next renewal learns it.
    manager.store.finish_run(run.run_id, RunStatus.error, error="worker lost: lease expired")
    time.sleep(0.3)
    heartbeat.stop()
    assert execution.lease_lost()
    assert "no longer this attempt's" in (execution.fence.lost_reason or "")
    assert not execution.abort_seen.is_set()


def test_only_the_delivery_that_registered_a_run_forgets_its_fence():
    """A duplicate delivery of a running run, skipped in another thread of the same process
    (threads pool), must not drop the running attempt's fence at its task_postrun."""
    from types import SimpleNamespace

    from runqueue.worker import running as module

    running = Execution("run-dup", "thread-1", "token", fence=_fence(clock() - 10))
    own, duplicate = SimpleNamespace(runqueue_execution=running), SimpleNamespace()
    module._executions["run-dup"] = running  # noqa: SLF001
    try:
        module.forget("run-dup", duplicate)
        assert module.lease_lost("run-dup")  # still known, still fenced: writes refused
        module.forget("run-dup", own)
        assert not module.lease_lost("run-dup") and module.token_of("run-dup") is None
    finally:
        module._executions.pop("run-dup", None)  # noqa: SLF001


def _as_run_child() -> None:
    """In a forked child: be a prefork pool child inside a run's body, with runqueue's
    SIGTERM handler."""
    from runqueue.worker import running, sigterm

    signal.signal(signal.SIGTERM, sigterm._on_sigterm)
    sigterm._child.in_task = True
    sigterm._child.in_body = running.Execution(run_id="r", thread_id="t", token="k")


def test_a_cancels_sigterm_waits_for_the_statement_under_way_then_unwinds():
    """A SIGTERM during one of the run's own statements is raised once it returns: an
    exception inside a psycopg call would leave the pooled connection mid-protocol."""
    from runqueue.worker import sigterm

    def child() -> None:
        _as_run_child()
        finished = []

        def statement() -> str:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler has run by now
            finished.append(True)
            return "committed"

        try:
            sigterm._statement(statement)
        except sigterm.RunTerminatedError:
            os._exit(3 if finished else 4)  # 3: the statement ran to its end, then unwound
        os._exit(5)  # the SIGTERM was lost

    code, _lived = _in_child(child)
    assert code == 3


def test_a_deferred_sigterm_waits_for_a_hung_statement_at_most_a_moment():
    from runqueue.worker import sigterm

    def child() -> None:
        _as_run_child()
        started = time.monotonic()

        def hung_statement() -> None:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)  # a statement on a connection that will never answer

        try:
            sigterm._statement(hung_statement)
        except sigterm.RunTerminatedError:
            waited = time.monotonic() - started
            os._exit(3 if waited < sigterm.SIGTERM_DEFER_SECONDS + 1 else 4)
        os._exit(5)

    code, lived = _in_child(child)
    assert code == 3 and lived < 10


def test_the_stream_thread_starts_with_the_first_event(manager):
    """A run that emits nothing (and ends before its first heartbeat) starts no writer
    thread; its first event starts one, and every event is written before close returns."""
    run, _execution, writer, context = _claimed(manager)
    writer.open()
    assert not writer.is_alive()
    context.emit("tick", {"n": 1})
    assert writer.is_alive() or writer.last_seq == 2
    writer.close(5.0)
    writer.join(5)
    assert writer.last_seq == 2  # metadata, then the tick
