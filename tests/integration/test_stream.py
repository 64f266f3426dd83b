"""The run stream, on both backends with a real prefork worker: complete and ordered for every
reader, ended by every way a run can end, resumable at any id."""

from __future__ import annotations

import random
import time
import uuid

import pytest

from runqueue import RunStatus
from tests.support import StreamReader, pid_alive, stream_ids, wait_until


def new_thread() -> str:
    return f"stream-{uuid.uuid4().hex[:12]}"


def ticks(events) -> list[int]:  # noqa: ANN001
    return [event.data["n"] for event in events if event.event == "tick"]


def assert_whole(events, first_id: int, count: int, status: str = "success") -> None:  # noqa: ANN001
    """Ids first_id, first_id + 1, ... with no hole and no repeat, no gap, and one final end."""
    assert [event.event for event in events].count("gap") == 0
    assert stream_ids(events) == list(range(first_id, first_id + count))
    assert events[-1].event == "end" and events[-1].data == {"status": status}
    assert [event.event for event in events].count("end") == 1


def test_three_readers_get_every_event_in_order(manager, worker, journal):
    run = manager.create(
        new_thread(), "emitter", kwargs={"count": 1000, "delay": 0.002, "journal": str(journal)}
    )
    before = StreamReader(manager, run.run_id).begin()  # the run has not started yet
    wait_until(lambda: len(before.events) >= 500, timeout=60, message="500 events")
    assert not manager.get(run.run_id).is_final  # halfway, not after
    halfway_id = before.events[499].id
    halfway = StreamReader(manager, run.run_id, after=halfway_id).begin()
    early = before.result()
    later = halfway.result()
    assert manager.join(run.run_id, timeout=30).status is RunStatus.success
    after = list(manager.stream(run.run_id))

    # metadata, 1,000 ticks, end: 1,002 events; each reader from where it started.
    assert_whole(early, 1, 1002)
    assert_whole(after, 1, 1002)
    assert_whole(later, 501, 502)
    assert early[0].event == "metadata"
    assert early[0].data == {"run_id": run.run_id, "thread_id": run.thread_id, "attempt": 1}
    assert ticks(early) == ticks(after) == list(range(1, 1001))
    assert ticks(later) == list(range(500, 1001))
    # What the readers got is what the assistant's process wrote.
    assert [line["n"] for line in journal.lines(run_id=run.run_id, event="tick")] == ticks(early)
    assert early == after


def _end_within(reader: StreamReader, since: float, status: RunStatus) -> float:
    """Seconds from `since` (time.time()) until the reader got `end` with this status."""
    events = reader.result(timeout=30)
    assert events[-1].data == {"status": status.value}
    return reader.end_at() - since


def test_success_and_error_end_the_stream_at_once(manager, worker):
    succeeded = manager.create(new_thread(), "echo", kwargs={"x": 1})
    failed = manager.create(new_thread(), "fail", kwargs={"message": "no luck"})
    for run, status in ((succeeded, RunStatus.success), (failed, RunStatus.error)):
        reader = StreamReader(manager, run.run_id).begin()
        final = manager.join(run.run_id, timeout=30)
        assert final.status is status
        assert _end_within(reader, final.ended_at.timestamp(), status) <= 1.0
    events = list(manager.stream(failed.run_id))
    assert [event.event for event in events] == ["metadata", "error", "end"]
    assert events[1].data == {"error": "RuntimeError", "message": "no luck"}


def test_cancel_while_pending_ends_the_stream(manager, worker, run_factory):
    thread_id = new_thread()
    blocker = run_factory(thread_id, steps=20, delay=0.05)
    waiting = run_factory(thread_id, steps=1, strategy="enqueue")
    reader = StreamReader(manager, waiting.run_id).begin()
    cancelled_at = time.time()
    assert manager.cancel(waiting.run_id) is True
    assert _end_within(reader, cancelled_at, RunStatus.interrupted) <= 1.0
    assert reader.result() == [reader.events[-1]]  # never started: no metadata, only the end
    manager.join(blocker.run_id, timeout=30)


@pytest.mark.parametrize("how", ["cancel", "interrupt", "rollback"])
def test_stopping_a_running_run_ends_its_stream(how, manager, worker, run_factory, journal):
    thread_id = new_thread()
    run = run_factory(thread_id, steps=400, delay=0.05)
    reader = StreamReader(manager, run.run_id).begin()
    wait_until(lambda: len(reader.events) >= 3, message="the run's first steps")
    pid = journal.pid(run.run_id)

    stopped_at = time.time()
    if how == "cancel":
        assert manager.cancel(run.run_id) is True
    else:
        run_factory(thread_id, steps=1, strategy=how)
    assert _end_within(reader, stopped_at, RunStatus.interrupted) <= 1.0
    wait_until(lambda: not pid_alive(pid), timeout=5, message="the run's process to stop")
    events = reader.result()
    steps_streamed = [event.data["step"] for event in events if event.event == "step"]
    # Every step the process finished was streamed, in order, and nothing after the end.
    assert steps_streamed == list(range(1, journal.count(run_id=run.run_id, event="step") + 1))
    assert list(manager.stream(run.run_id)) == events


def test_a_reader_that_drops_and_resumes_20_times_gets_the_whole_stream(manager, worker):
    run = manager.create(new_thread(), "emitter", kwargs={"count": 600, "delay": 0.004})
    received, last_id, resumed_while_running = [], None, 0
    chooser = random.Random(7)
    while not received or received[-1].event != "end":
        if not manager.get(run.run_id).is_final and received:
            resumed_while_running += 1
        stream = manager.stream(run.run_id, after=last_id)
        session = chooser.randint(5, 25)
        for count, event in enumerate(stream, start=1):
            received.append(event)
            last_id = event.id
            if count == session and resumed_while_running < 25:
                break  # the connection drops: resume from the last id
        stream.close()
    whole = list(manager.stream(run.run_id))
    assert resumed_while_running >= 20
    assert received == whole
    assert_whole(received, 1, 602)
    assert ticks(received) == list(range(1, 601))


def test_stream_of_an_unknown_run_is_an_error_not_a_hang(manager):
    from runqueue import RunNotFoundError
    from runqueue.errors import InvalidCursorError

    with pytest.raises(RunNotFoundError):
        manager.stream(str(uuid.uuid4()))
    run = manager.create(new_thread(), "echo")
    with pytest.raises(InvalidCursorError):
        list(manager.stream(run.run_id, after="0-5; DROP"))
    manager.cancel(run.run_id)
    manager.join(run.run_id, timeout=30)
    # "-1", the official clients' Last-Event-ID for a whole replay: from the start.
    assert list(manager.stream(run.run_id, after="-1")) == list(manager.stream(run.run_id))
    with pytest.raises(InvalidCursorError):
        list(manager.stream(run.run_id, after="-2"))
