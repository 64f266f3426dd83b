"""A thread stream's ids and modes (runqueue/api/thread_follower.py, thread_stream.py): what
Last-Event-ID resumes from, and which events each thread stream mode keeps."""

from __future__ import annotations

import pytest

from runqueue.api.thread_follower import Position, position, run_done, wanted
from runqueue.api.thread_stream import thread_stream_modes
from runqueue.errors import InvalidCursorError, InvalidPayloadError
from runqueue.records import StreamEvent

RUN = "01a250db-6b52-71a9-99d9-7acc369eb120"


def test_an_id_names_its_run_and_its_place():
    assert position(f"{RUN}:7") == Position(RUN, after=7)
    assert position(f"{RUN.upper()}:done") == Position(RUN, done=True)
    assert position(None) is None and position("") is None
    assert position("-") is None  # the reference's "from the start"
    assert run_done(RUN).id == f"{RUN}:done"


@pytest.mark.parametrize(
    "given",
    [
        "7",
        "1796652887402-0",
        f"{RUN}",
        f"{RUN}:",
        f"{RUN}:-1",
        f"{RUN}:x",
        f"{RUN}:1e3",
        f"{RUN}:{'9' * 19}",
        f"{RUN}:٣",
        "not-a-run:1",
    ],
)
def test_an_id_no_thread_stream_gives_is_refused(given: str):
    with pytest.raises(InvalidCursorError, match="invalid Last-Event-ID"):
        position(given)


def test_each_mode_keeps_its_events():
    attempt = StreamEvent(f"{RUN}:1", "metadata", {"run_id": RUN, "thread_id": "t", "attempt": 1})
    values = StreamEvent(f"{RUN}:2", "values", {"steps": []})
    error = StreamEvent(f"{RUN}:3", "error", {"error": "ValueError", "message": "boom"})
    events = [attempt, values, error, run_done(RUN)]
    assert [e for e in events if wanted(e, frozenset({"run_modes"}))] == events
    assert [e for e in events if wanted(e, frozenset({"lifecycle"}))] == [attempt, run_done(RUN)]
    assert [e for e in events if wanted(e, frozenset({"state_update"}))] == []


def test_modes_are_read_comma_separated():
    assert thread_stream_modes(None) == {"run_modes"}
    assert thread_stream_modes("lifecycle, state_update") == {"lifecycle", "state_update"}
    with pytest.raises(InvalidPayloadError, match="stream mode 'values' is not a thread"):
        thread_stream_modes("run_modes,values")
