"""An event over the stream's size limit, with the limit lowered (4 KiB) so that a small graph
run crosses it: every reader is told, in order, what was left out and where to read it, and
the run's result and the thread's state still hold the whole values."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runqueue import RunStatus
from tests.conftest import BACKENDS, require_services
from tests.support import Backend, StreamReader, make_backend, stream_ids

LIMIT = 4096  # RUNQUEUE_STREAM_MAX_EVENT_BYTES for this module's backends
TOPIC = "t" * 3000  # the input's values fit; with the question the plan adds, they do not


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Backend]:  # noqa: ANN001
    if request.param != "embedded":
        require_services()
    tmp: Path = tmp_path_factory.mktemp(f"left-out-{request.param}")
    backend = make_backend(request.param, tmp, stream_max_event_bytes=LIMIT)
    yield backend
    backend.close()


def json_bytes(value: object) -> int:
    """The size of `value` as the stream encodes it."""
    text = json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    return len(text.encode())


def test_values_over_the_limit_are_named_in_the_stream_and_whole_in_the_result(manager, worker):
    thread_id = f"left-out-{uuid.uuid4().hex[:12]}"
    run = manager.create(
        thread_id,
        "research",
        kwargs={"input": {"topic": TOPIC}, "stream_mode": ["values", "updates"]},
    )
    live = StreamReader(manager, run.run_id).begin()
    events = live.result(timeout=60)
    final = manager.join(run.run_id, timeout=30)
    assert final.status is RunStatus.success
    replayed = list(manager.stream(run.run_id))

    # Every event has its place in the stream: ids 1..n, no hole, the notices included.
    names = [event.event for event in events]
    assert names[0] == "metadata" and names[-1] == "end" and names.count("end") == 1
    assert stream_ids(events) == list(range(1, len(events) + 1))
    assert replayed == events
    # The nodes' updates all arrive, in the graph's order, around the notices.
    updates = [next(iter(event.data)) for event in events if event.event == "updates"]
    assert updates == ["plan", "research", "review", "respond"]
    # `values`: the input's fit; the four after it (one per node) are each left out, with a
    # `gap` in their place that says what, how big, the limit and where to read it.
    values = [event for event in events if event.event == "values"]
    notices = [event for event in events if event.event == "gap"]
    assert [event.data for event in values] == [{"topic": TOPIC, "log": [], "messages": []}]
    assert len(notices) == 4
    join = f"GET /threads/{thread_id}/runs/{run.run_id}/join"
    for notice in notices:
        assert notice.data == {
            "left_out": {
                "event": "values",
                "bytes": notice.data["left_out"]["bytes"],
                "limit": LIMIT,
                "setting": "RUNQUEUE_STREAM_MAX_EVENT_BYTES",
                "read": join,
            }
        }
        assert notice.data["left_out"]["bytes"] > LIMIT
    assert names.index("gap") > names.index("values")  # in the order they were produced
    assert names[-2] == "gap"  # the final values' notice comes before `end`

    # The whole final values: the run's result (join) and the thread's state.
    result = final.result
    assert json_bytes(result) == notices[-1].data["left_out"]["bytes"]
    assert result["topic"] == TOPIC
    contents = [message["content"] for message in result["messages"]]
    assert contents == [
        f"Tell me about {TOPIC}",
        f"Here is a short note on {TOPIC}: durable, fenced and streamed.",
    ]
    assert [entry.split("@")[0] for entry in result["log"]] == [
        "plan", "research", "review", "respond",
    ]  # fmt: skip
    assert manager.state(thread_id).values == result


def test_a_plain_assistant_hears_of_its_event_over_the_limit_and_so_does_the_reader(
    manager, worker, journal
):
    """emit() refuses at once: the assistant stops there, and the reader gets the run's
    `error`, naming the size, the limit and the setting, before `end`."""
    run = manager.create(
        f"left-out-{uuid.uuid4().hex[:12]}",
        "emitter",
        kwargs={"count": 3, "pad": LIMIT, "journal": str(journal)},
    )
    assert manager.join(run.run_id, timeout=30).status is RunStatus.error
    events = list(manager.stream(run.run_id))
    assert [event.event for event in events] == ["metadata", "error", "end"]
    size = json_bytes({"n": 1, "pad": "x" * LIMIT})
    assert events[1].data == {
        "error": "EventTooLargeError",
        "message": f"data of event 'tick' is {size} bytes; the limit is {LIMIT} "
        "(RUNQUEUE_STREAM_MAX_EVENT_BYTES)",
    }
    assert journal.lines(run_id=run.run_id, event="tick") == []  # it stopped at the first
