"""Retention of run streams, with a short retention (2 s) and a small cap (100 events): a
finished run's stream expires and still ends at once; trimmed or expired events read as
`gap`; a running run's stream is kept however long it stays silent."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runqueue import RunStatus
from tests.conftest import BACKENDS, require_services
from tests.support import Backend, StreamReader, make_backend, stream_ids

RETENTION = 2.0
CAP = 100


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Backend]:  # noqa: ANN001
    if request.param != "embedded":
        require_services()
    tmp: Path = tmp_path_factory.mktemp(f"retention-{request.param}")
    backend = make_backend(
        request.param, tmp, stream_retention_seconds=RETENTION, stream_max_events=CAP
    )
    yield backend
    backend.close()


def new_thread() -> str:
    return f"retention-{uuid.uuid4().hex[:12]}"


def read_all(manager, run_id: str, after: str | None = None) -> tuple[list, float]:  # noqa: ANN001
    started = time.monotonic()
    events = list(manager.stream(run_id, after=after))
    return events, time.monotonic() - started


def test_a_finished_run_past_retention_ends_at_once(manager, worker):
    run = manager.create(new_thread(), "echo")
    assert manager.join(run.run_id, timeout=30).status is RunStatus.success
    kept, _ = read_all(manager, run.run_id)
    assert [event.event for event in kept] == ["metadata", "end"]
    time.sleep(RETENTION + 1.0)

    expired, took = read_all(manager, run.run_id)
    assert [(event.id, event.event, event.data) for event in expired] == [
        (None, "end", {"status": "success"})
    ]
    assert took < 0.5
    # A reader that had a position learns that what followed it is gone, then the end.
    resumed, took = read_all(manager, run.run_id, after="1")
    assert [(event.event, event.data) for event in resumed] == [
        ("gap", {"after": "1", "next": None}),
        ("end", {"status": "success"}),
    ]
    assert took < 0.5
    assert manager.join(run.run_id, timeout=1).status is RunStatus.success


def test_events_trimmed_by_the_cap_read_as_a_gap(manager, worker):
    run = manager.create(new_thread(), "emitter", kwargs={"count": 1000})
    manager.join(run.run_id, timeout=60)
    for after in (None, "5"):
        events, _ = read_all(manager, run.run_id, after=after)
        gap, rest = events[0], events[1:]
        assert gap.event == "gap" and gap.id is None
        assert gap.data["after"] == (after or "0")
        first = int(gap.data["next"])
        # From the first event kept to the end, contiguous: only the oldest were dropped.
        assert stream_ids(rest) == list(range(first, 1003))
        assert CAP <= len(rest) <= 3 * CAP
        assert rest[-1].event == "end" and rest[-1].data == {"status": "success"}


def test_a_silent_running_run_keeps_its_stream(manager, worker):
    # One step that takes twice the retention: the stream holds only `metadata` meanwhile.
    run = manager.create(new_thread(), "steps", kwargs={"steps": 1, "delay": 2 * RETENTION})
    reader = StreamReader(manager, run.run_id).begin()
    time.sleep(2 * RETENTION - 0.5)
    assert not manager.get(run.run_id).is_final
    assert [event.event for event in reader.events] == ["metadata"]
    late = StreamReader(manager, run.run_id).begin()  # joins a silent run past the retention
    time.sleep(0.3)
    assert [event.event for event in late.events] == ["metadata"]
    for follower in (reader, late):
        assert [event.event for event in follower.result()] == ["metadata", "step", "end"]
