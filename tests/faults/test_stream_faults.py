"""The run stream under faults, on both backends: time limits, a SIGKILLed worker and a
paused (SIGSTOP) pool child all end the stream, and a process that lost its run can never
write after the `end`; a stream whose Redis restarts goes on, with a `gap`; the shared reader
of async followers tells each of them of an outage, and serves again once Redis is back."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid

import pytest

from runqueue import RunStatus
from runqueue.errors import StreamUnavailableError
from runqueue.journal import Journal
from runqueue.stream.redis_transport import RedisStreamTransport
from tests.faults import faultkit
from tests.support import RunFactory, StreamReader, pid_alive, stream_ids


def _thread() -> str:
    return f"stream-fault-{uuid.uuid4().hex[:10]}"


def _ending(events) -> list:  # noqa: ANN001
    """The last events: `error` (if any) and `end`, as (event, data)."""
    tail = [(event.event, event.data) for event in events[-2:]]
    return tail if tail[0][0] == "error" else tail[1:]


@pytest.mark.parametrize("assistant", ["soft_limited", "hard_limited"])
def test_a_time_limit_ends_the_stream(each_backend, workers, assistant, report):
    settings = each_backend.settings
    manager = faultkit.manager_for(settings)
    workers(settings, concurrency=1)
    run = manager.create(_thread(), assistant, kwargs={"seconds": 30})
    reader = StreamReader(manager, run.run_id).begin()
    done = manager.join(run.run_id, timeout=30)
    events = reader.result()
    late = reader.end_at() - done.ended_at.timestamp()
    report(f"stream-end-{assistant}", runs=1, end_after_status_s=late)
    assert done.status is RunStatus.timeout
    expected = "SoftTimeLimitExceeded" if assistant == "soft_limited" else "TimeLimitExceeded"
    (error, end) = _ending(events)
    assert error[0] == "error" and error[1]["error"] == expected
    assert end == ("end", {"status": "timeout"})
    assert late <= 1.0


def test_a_sigkilled_worker_stream_is_ended_by_the_reaper(each_backend, workers, report, tmp_path):
    settings = each_backend.settings
    manager = faultkit.manager_for(settings)
    journal = Journal(tmp_path / "journal.jsonl")
    first, second = workers(settings, count=2, concurrency=1)  # the survivor reaps
    run = RunFactory(manager, journal)(_thread(), assistant="emitter", count=100_000, delay=0.01)
    reader = StreamReader(manager, run.run_id).begin()
    faultkit.wait_for(lambda: len(reader.events) > 5, 30, "the run's first events")
    pid = journal.pid(run.run_id)
    victim = first if pid in first.pool_pids() else second

    killed_at = time.time()
    faultkit.kill_process_tree(victim)
    events = reader.result(timeout=settings.lease_seconds + 15)
    ended_after = reader.end_at() - killed_at
    report("stream-end-sigkill", runs=1, end_after_kill_s=ended_after)
    assert _ending(events) == [
        ("error", {"error": "WorkerLostError", "message": "worker lost: lease expired"}),
        ("end", {"status": "error"}),
    ]
    assert ended_after <= settings.lease_seconds + 5
    assert stream_ids(events) == list(range(1, len(events) + 1))


@pytest.mark.parametrize("assistant", ["steps", "emitter"])
def test_a_paused_child_cannot_write_after_the_end(
    each_backend, workers, assistant, report, tmp_path
):
    """SIGSTOP the pool child past its lease; the reaper ends the run; SIGCONT: the child
    finds its lease over before its next checkpoint or event and exits (the fence's hard
    stop), and the stream has nothing after its `end`."""
    settings = each_backend.settings
    manager = faultkit.manager_for(settings)
    journal = Journal(tmp_path / "journal.jsonl")
    (worker,) = workers(settings, concurrency=2)
    kwargs = {"steps": 1000} if assistant == "steps" else {"count": 1000}
    written = "step" if assistant == "steps" else "tick"
    run = RunFactory(manager, journal)(_thread(), assistant=assistant, delay=0.5, **kwargs)
    reader = StreamReader(manager, run.run_id).begin()
    faultkit.wait_for(lambda: journal.count(run_id=run.run_id, event=written) >= 2, 30, "events")
    pid = journal.pid(run.run_id)
    assert pid in worker.pool_pids()

    # Stop it just after it journaled a write, so while it sleeps: on SQLite, a process
    # stopped inside a write transaction holds the database's one write lock, and every
    # other writer (the reaper too) waits for it (see docs/reliability.md).
    seen = journal.count(run_id=run.run_id, event=written)
    faultkit.wait_for(
        lambda: journal.count(run_id=run.run_id, event=written) > seen, 10, "a fresh write"
    )
    os.kill(pid, signal.SIGSTOP)
    try:
        ended = manager.join(run.run_id, timeout=settings.lease_seconds + 10)
        events = reader.result(timeout=10)
    finally:
        os.kill(pid, signal.SIGCONT)
    resumed_at = time.time()
    faultkit.wait_for(
        lambda: not pid_alive(pid), settings.heartbeat_interval + 1, "the child to exit"
    )
    time.sleep(1.0)  # anything the child could still write would be there by now
    after = list(manager.stream(run.run_id))
    streamed = [event for event in after if event.event == written]
    journaled = journal.lines(run_id=run.run_id, event=written)
    report(
        f"stream-fence-sigstop-{assistant}",
        runs=1,
        events=len(after),
        written_after_end=len(after) - len(events),
    )
    assert ended.status is RunStatus.error and "lease expired" in ended.error
    assert after == events  # nothing after the end
    assert after[-1].data == {"status": "error"}
    # Not one more line of the assistant ran after SIGCONT (the process's own fence), and
    # the stream holds what it emitted before the pause, in order. (An emit is queued, then
    # written by the attempt's stream writer: one queued just before the pause may be
    # journaled, not streamed.)
    assert not [line for line in journal.lines(run_id=run.run_id) if line["time"] >= resumed_at]
    numbers = [event.data["step" if assistant == "steps" else "n"] for event in streamed]
    assert numbers == list(range(1, len(streamed) + 1))
    assert len(journaled) - len(streamed) in (0, 1)
    if assistant == "steps":
        checkpoints = [c for c in manager.checkpoints(run.thread_id) if c.run_id == run.run_id]
        assert len(checkpoints) == len(journaled)


def test_a_stream_whose_redis_restarts_goes_on_with_a_gap(
    shared_database, shared_broker_url, private_redis, workers, report, tmp_path
):
    """The stream in its own Redis (no persistence), restarted mid-run: the running attempt
    reopens it (the database says the run is still its own); a reader that resumes gets a
    `gap` for what the restart lost, then the rest, and the run succeeds."""
    backend = faultkit.fault_backend(
        tmp_path, shared_database, shared_broker_url, stream_url=private_redis.url
    )
    settings = backend.settings
    manager = faultkit.manager_for(settings)
    workers(settings, concurrency=1)
    run = manager.create(_thread(), "emitter", kwargs={"count": 300, "delay": 0.01})
    received, last_id, errors = [], None, 0
    restarted = False
    while not received or received[-1].event != "end":
        try:
            for event in manager.stream(run.run_id, after=last_id):
                received.append(event)
                last_id = event.id or last_id
                if not restarted and len(received) >= 100:
                    private_redis.restart()
                    restarted = True
        except StreamUnavailableError:
            errors += 1
            time.sleep(0.2)
    done = manager.join(run.run_id, timeout=30)
    late = list(manager.stream(run.run_id))  # a reader from the start, after the end
    ticks = [event.data["n"] for event in received if event.event == "tick"]
    gaps = [event for event in received if event.event == "gap"]
    report(
        "stream-redis-restart",
        runs=1,
        live_reader_missed=300 - len(ticks),
        live_reader_gaps=len(gaps),
        reader_errors=errors,
        kept_after_restart=len(late) - 1,
    )
    assert done.status is RunStatus.success
    # The live reader: in order, none twice, through the end; a hole only as a `gap`.
    assert ticks == sorted(set(ticks)) and ticks[-1] == 300
    assert ticks == list(range(1, 301)) or len(gaps) == 1
    assert received[-1].data == {"status": "success"}
    # What the restart lost reads as one `gap`; numbering went on from where the attempt was.
    assert late[0].event == "gap" and late[0].data["after"] == "0"
    assert stream_ids(late[1:]) == list(range(int(late[0].data["next"]), int(late[-1].id) + 1))
    assert late[-1].data == {"status": "success"} and int(late[-1].id) == 302


async def _until(condition, timeout: float = 10.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_a_redis_outage_reaches_every_waiting_follower_and_the_reader_recovers(
    private_redis, report
):
    """Ten async followers of five runs wait in the shared XREAD (redis_multiplexer.py);
    Redis is killed: every one of them gets StreamUnavailableError at once. Redis is back:
    the same multiplexer serves a new follower."""
    transport = RedisStreamTransport(private_redis.url, retention_seconds=60.0, max_events=100)

    def new_run() -> str:
        run_id = str(uuid.uuid4())
        transport.open(run_id, "a1", 1, "metadata", "{}")
        return run_id

    async def scenario() -> tuple[list[BaseException | list], float, list[int], bool]:
        runs = [new_run() for _ in range(5)]
        multiplexer = transport.multiplexer()
        followers = [
            asyncio.create_task(transport.async_reader().read(run, 1, block=30.0, count=10))
            for run in runs
            for _ in range(2)
        ]
        await _until(lambda: multiplexer.waiting == 10)
        private_redis.stop()
        stopped = time.monotonic()
        outcomes = await asyncio.wait_for(asyncio.gather(*followers, return_exceptions=True), 20)
        cut_after = time.monotonic() - stopped
        private_redis.start()
        run = new_run()  # the restart lost everything: a new stream
        follower = asyncio.create_task(transport.async_reader().read(run, 1, block=10.0, count=10))
        await _until(lambda: multiplexer.waiting == 1)
        await asyncio.to_thread(transport.append, run, "a1", [("tick", "{}")])
        recovered = await asyncio.wait_for(follower, 10)
        return (
            outcomes,
            cut_after,
            [entry.seq for entry in recovered],
            (transport.multiplexer() is multiplexer),
        )

    try:
        outcomes, cut_after, recovered, same = asyncio.run(scenario())
    finally:
        transport.close()
    report("stream-multiplexer-outage", waiters=10, cut_after_s=cut_after)
    assert all(isinstance(outcome, StreamUnavailableError) for outcome in outcomes), outcomes
    assert cut_after < 5.0
    assert recovered == [2] and same
