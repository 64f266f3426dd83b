"""Both stream transports in-process, against the real stores (a SQLite file, and a Redis
database of the shared server): the fence, numbering, retention, and the reader's cursor."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from runqueue import RunStatus, Settings
from runqueue.store.database import migrate
from runqueue.stream import AppendOutcome, RunStream, open_stream
from tests.conftest import require_services
from tests.support import REDIS_HOST, REDIS_PORT

REDIS_DB = 13  # the tests' other Redis users pick databases by hash; this one is cleaned


def _open(kind: str, tmp_path: Path, retention: float = 1.0) -> tuple[RunStream, Settings]:
    settings = Settings(
        data_dir=tmp_path, stream_retention_seconds=retention, stream_max_events=100
    )
    if kind == "redis":
        require_services()
        url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
        settings = settings.with_overrides(stream_url=url)
    migrate(settings)
    return open_stream(settings), settings


def _close(stream: RunStream, settings: Settings) -> None:
    if settings.is_redis_stream:
        client = redis.Redis.from_url(settings.stream_url)
        keys = list(client.scan_iter("runqueue:stream:*"))
        if keys:
            client.delete(*keys)
        client.close()
    stream.close()


@pytest.fixture(params=["sql", "redis"])
def stream(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunStream]:
    stream, settings = _open(request.param, tmp_path)
    yield stream
    _close(stream, settings)


@pytest.fixture(params=["sql", "redis"])
def lasting_stream(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunStream]:
    """A stream kept a minute after its end: a test whose writers take seconds to be refused
    on a busy machine still reads it whole (with the 1 s retention it could read it gone)."""
    stream, settings = _open(request.param, tmp_path, retention=60.0)
    yield stream
    _close(stream, settings)


@pytest.fixture
def redis_stream(tmp_path: Path) -> Iterator[RunStream]:
    stream, settings = _open("redis", tmp_path)
    yield stream
    _close(stream, settings)


class FakeRun:
    """What a reader asks the database: the run's status (final or not)."""

    def __init__(self, status: RunStatus = RunStatus.running):
        self.run_id, self.status, self.error = "", status, None

    @property
    def is_final(self) -> bool:
        return self.status.is_final


def entries(count: int, event: str = "tick") -> list[tuple[str, str]]:
    return [(event, f'{{"n": {n}}}') for n in range(1, count + 1)]


def read_all(stream: RunStream, run_id: str, after=None, run=None) -> list:  # noqa: ANN001
    run = run or FakeRun(RunStatus.success)
    return list(stream.follow(run_id, after, lambda: run))


def test_numbers_have_no_hole_and_the_end_fences_every_writer(stream: RunStream):
    run_id = str(uuid.uuid4())
    assert stream.open(run_id, "a1", thread_id="t", attempt=1).seq == 1
    assert stream.append(run_id, "a1", entries(3)).seq == 4
    assert stream.append(run_id, "other", entries(1)).outcome is AppendOutcome.not_owner
    assert stream.end(run_id, RunStatus.success) is True
    assert stream.end(run_id, RunStatus.error) is False  # once
    assert stream.append(run_id, "a1", entries(1)).outcome is AppendOutcome.ended
    assert stream.open(run_id, "a2", thread_id="t", attempt=2).outcome is AppendOutcome.ended
    events = read_all(stream, run_id)
    assert [event.id for event in events] == ["1", "2", "3", "4", "5"]
    assert events[-1].data == {"status": "success"}


def test_a_late_open_never_takes_the_stream_from_a_newer_attempt(stream: RunStream):
    run_id = str(uuid.uuid4())
    assert stream.open(run_id, "second", thread_id="t", attempt=2).written
    late = stream.open(run_id, "first", thread_id="t", attempt=1)
    assert late.outcome is AppendOutcome.not_owner
    assert stream.append(run_id, "first", entries(1)).outcome is AppendOutcome.not_owner
    assert stream.append(run_id, "second", entries(1)).written


def test_appends_racing_the_end_never_land_after_it(lasting_stream: RunStream):
    stream = lasting_stream
    run_id = str(uuid.uuid4())
    stream.open(run_id, "a1", thread_id="t", attempt=1)
    outcomes: list[AppendOutcome] = []

    def write() -> None:
        for _ in range(200):
            outcomes.append(stream.append(run_id, "a1", entries(2)).outcome)

    writers = [threading.Thread(target=write) for _ in range(3)]
    for writer in writers:
        writer.start()
    time.sleep(0.02)
    stream.end(run_id, RunStatus.interrupted)
    for writer in writers:
        writer.join()
    events = read_all(stream, run_id, run=FakeRun(RunStatus.interrupted))
    assert events[-1].event == "end"
    kept = [event for event in events if event.event == "tick"]
    # Every append that was accepted precedes the end; all those after it were refused.
    assert len(kept) == 2 * outcomes.count(AppendOutcome.appended) or events[0].event == "gap"
    assert AppendOutcome.ended in outcomes
    assert set(outcomes) <= {AppendOutcome.appended, AppendOutcome.ended}


def test_a_reader_resuming_after_the_end_gets_the_end_and_no_gap(stream: RunStream):
    run_id = str(uuid.uuid4())
    stream.open(run_id, "a1", thread_id="t", attempt=1)
    stream.end(run_id, RunStatus.success)
    events = read_all(stream, run_id, after="2")
    assert [(event.event, event.data) for event in events] == [("end", {"status": "success"})]


def test_a_stream_the_writer_never_ended_is_ended_by_its_reader(stream: RunStream):
    run_id = str(uuid.uuid4())
    stream.open(run_id, "a1", thread_id="t", attempt=1)
    stream.append(run_id, "a1", entries(2))
    failed = FakeRun(RunStatus.error)
    failed.error = "RuntimeError: boom"
    started = time.monotonic()
    events = read_all(stream, run_id, run=failed)
    assert time.monotonic() - started < 5
    assert [event.event for event in events] == ["metadata", "tick", "tick", "error", "end"]
    assert events[-2].data == {"error": "RunError", "message": "RuntimeError: boom"}
    assert stream.append(run_id, "a1", entries(1)).outcome is AppendOutcome.ended


def test_past_retention_a_stream_is_gone_and_its_reader_still_ends(stream: RunStream):
    """Redis expires the keys; the database transport's maintenance pass purges the rows."""
    run_id = str(uuid.uuid4())
    stream.open(run_id, "a1", thread_id="t", attempt=1)
    stream.end(run_id, RunStatus.success)
    time.sleep(1.3)
    stream.transport.purge_expired()
    assert stream.transport.last_seq(run_id) is None
    assert [(e.id, e.event) for e in read_all(stream, run_id)] == [(None, "end")]
    assert [e.event for e in read_all(stream, run_id, after="1")] == ["gap", "end"]


def test_the_cap_trims_the_oldest_and_readers_see_a_gap(stream: RunStream):
    run_id = str(uuid.uuid4())
    stream.open(run_id, "a1", thread_id="t", attempt=1)
    for _ in range(10):
        stream.append(run_id, "a1", entries(100))
    stream.end(run_id, RunStatus.success)
    events = read_all(stream, run_id, after="10")
    assert events[0].event == "gap" and events[0].data["after"] == "10"
    first = int(events[0].data["next"])
    assert [int(e.id) for e in events[1:]] == list(range(first, 1003))


def test_redis_keeps_a_running_stream_and_expires_an_ended_one(redis_stream: RunStream):
    stream = redis_stream
    client = redis.Redis.from_url(stream.transport.url)
    run_id = str(uuid.uuid4())
    stream.open(run_id, "a1", thread_id="t", attempt=1)
    head = f"runqueue:stream:{{{run_id}}}:head"
    assert client.pttl(head) > 3_000_000  # the keep-alive (an hour), not the retention
    stream.touch(run_id)
    assert client.pttl(head) > 3_000_000
    stream.end(run_id, RunStatus.success)
    assert 0 < client.pttl(head) <= 1000  # the retention, from the end
    stream.touch(run_id)  # an ended stream keeps its retention
    assert client.pttl(head) <= 1000
    client.close()


def test_a_lost_redis_stream_is_reopened_numbering_on(redis_stream: RunStream):
    stream = redis_stream
    client = redis.Redis.from_url(stream.transport.url)
    run_id = str(uuid.uuid4())
    stream.open(run_id, "a1", thread_id="t", attempt=1)
    stream.append(run_id, "a1", entries(5))
    client.delete(f"runqueue:stream:{{{run_id}}}", f"runqueue:stream:{{{run_id}}}:head")
    assert stream.append(run_id, "a1", entries(1)).outcome is AppendOutcome.missing
    assert stream.reopen(run_id, "a1", 1, 6) is True
    assert stream.append(run_id, "a1", entries(1)).seq == 7
    stream.end(run_id, RunStatus.success)
    events = read_all(stream, run_id, after="3")
    assert [e.event for e in events] == ["gap", "tick", "end"]
    assert events[0].data == {"after": "3", "next": "7"}
    # Lost between attempts: the next attempt numbers on far above, so readers see a gap.
    other = str(uuid.uuid4())
    stream.open(other, "a1", thread_id="t", attempt=1)
    client.delete(f"runqueue:stream:{{{other}}}", f"runqueue:stream:{{{other}}}:head")
    reopened = stream.open(other, "a2", thread_id="t", attempt=2)
    assert reopened.seq > 1_000_000_000
    client.close()
