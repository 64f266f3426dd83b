"""Every LangGraph run option the SDK sends, through the HTTP API (langgraph-sdk, a real
`runqueue serve` and a real prefork worker on PostgreSQL + Redis), each reaching the graph
(tests/option_graphs.py): its nodes write what they got, and the thread's checkpoints are
counted in the database."""

from __future__ import annotations

import httpx
import pytest
from langgraph_sdk import get_sync_client
from sqlalchemy import create_engine, text

from tests.api_support import ServerProcess, table_counts

pytestmark = pytest.mark.integration

GRAPH = "options"  # tests/option_graphs.py
CELERY = "echo"  # workers/assistants.py: a plain Celery assistant


def sdk_of(server: ServerProcess, key: str):  # noqa: ANN201
    return get_sync_client(url=server.url, api_key=key)


def post_run(server: ServerProcess, key: str, thread_id: str, body: dict) -> httpx.Response:
    return httpx.post(
        f"{server.url}/threads/{thread_id}/runs/wait",
        json=body,
        headers={"x-api-key": key},
        timeout=60,
    )


def checkpoints_of(api_backend, thread_id: str) -> int:  # noqa: ANN001
    """The thread's checkpoints in the database, every namespace's."""
    engine = create_engine(api_backend.settings.database_url)
    try:
        with engine.connect() as conn:
            query = text("SELECT count(*) FROM checkpoints WHERE thread_id = :t")
            return conn.execute(query, {"t": thread_id}).scalar_one()
    finally:
        engine.dispose()


# -- refused before anything is written ------------------------------------------------------


def test_what_a_run_cannot_take_is_refused_naming_it(server, keys, api_backend) -> None:  # noqa: ANN001
    key = keys["alice"]
    tid = sdk_of(server, key).threads.create()["thread_id"]
    before = table_counts(api_backend)
    refusals = [
        (CELERY, {"context": {"a": 1}, "stream_subgraphs": True}, "context, stream_subgraphs"),
        (CELERY, {"interrupt_before": ["x"], "durability": "exit"}, "interrupt_before"),
        (CELERY, {"checkpoint_during": False}, "checkpoint_during"),
        (
            GRAPH,
            {"context": {"user": "ada"}, "config": {"configurable": {"user": "bob"}}},
            "context, config.configurable",
        ),
        (GRAPH, {"webhook": "http://example.invalid/hook"}, "webhook"),
        (GRAPH, {"interrupt_before": ["finsh"]}, "interrupt_before: graph assistant"),
        (GRAPH, {"interrupt_after": ["greet", "nope"]}, "has no node 'nope'"),
        (GRAPH, {"context": {"checkpoint_id": "1ef"}}, "context.checkpoint_id is set by"),
        (
            GRAPH,
            {"config": {"configurable": {"checkpoint_map": {}}}},
            "config.configurable.checkpoint_map is set by",
        ),
        (GRAPH, {"feedback_keys": ["score"]}, "feedback_keys"),
    ]
    for assistant, fields, named in refusals:
        response = post_run(server, key, tid, {"assistant_id": assistant, **fields})
        assert response.status_code == 422, (fields, response.text)
        assert named in response.json()["detail"], (fields, response.text)
    for fields in ({"interrupt_before": "greet"}, {"durability": "never"}, {"context": [1]}):
        response = post_run(server, key, tid, {"assistant_id": GRAPH, **fields})
        assert response.status_code == 422, (fields, response.text)
        assert next(iter(fields)) in response.text
    assert table_counts(api_backend) == before


def test_a_celery_assistant_takes_what_the_sdk_sends_by_default(server, keys) -> None:  # noqa: ANN001
    sdk = sdk_of(server, keys["alice"])
    tid = sdk.threads.create()["thread_id"]
    result = sdk.runs.wait(tid, CELERY, input={"word": "hi"}, durability="sync")
    assert result["echo"] == {"word": "hi"}
    response = post_run(
        server,
        keys["alice"],
        tid,
        {"assistant_id": CELERY, "input": {"w": 1}, "stream_resumable": True},
    )
    assert response.status_code == 200 and response.json()["echo"] == {"w": 1}


# -- each option reaches the graph -----------------------------------------------------------


def test_the_context_reaches_the_node_filtered_by_its_schema(server, keys) -> None:  # noqa: ANN001
    sdk = sdk_of(server, keys["alice"])
    tid = sdk.threads.create()["thread_id"]
    # `extra` is not in the graph's dataclass context: unfiltered, the run would fail.
    values = sdk.runs.wait(tid, GRAPH, input={}, context={"user": "ada", "extra": 1})
    assert values["seen_context"] == {"user": "ada", "tone": "plain"}
    assert values["steps"] == ["greet", "finish"]
    # A caller's configurable is the context when none is given, as the reference mirrors it.
    other = sdk.threads.create()["thread_id"]
    values = sdk.runs.wait(other, GRAPH, input={}, config={"configurable": {"tone": "warm"}})
    assert values["seen_context"] == {"user": "nobody", "tone": "warm"}


def test_a_breakpoint_stops_the_run_before_its_node(server, keys) -> None:  # noqa: ANN001
    sdk = sdk_of(server, keys["alice"])
    tid = sdk.threads.create()["thread_id"]
    run = sdk.runs.create(tid, GRAPH, input={}, interrupt_before=["finish"])
    sdk.runs.join(tid, run["run_id"])
    state = sdk.threads.get_state(tid)
    assert state["next"] == ["finish"] and state["values"]["steps"] == ["greet"]
    assert sdk.runs.get(tid, run["run_id"])["status"] in ("success", "interrupted")
    # Going on from the breakpoint runs the node it stopped before.
    values = sdk.runs.wait(tid, GRAPH, input=None)
    assert values["steps"] == ["greet", "finish"]
    after = sdk.runs.create(sdk.threads.create()["thread_id"], GRAPH, input={}, interrupt_after="*")
    sdk.runs.join(after["thread_id"], after["run_id"])
    assert sdk.threads.get_state(after["thread_id"])["next"] == ["sub"]


def test_subgraph_events_come_with_their_namespace_only_when_asked(server, keys) -> None:  # noqa: ANN001
    sdk = sdk_of(server, keys["alice"])

    def streamed(**options: object) -> list[str]:
        tid = sdk.threads.create()["thread_id"]
        parts = sdk.runs.stream(tid, GRAPH, input={}, stream_mode="updates", **options)
        return [part.event for part in parts]

    with_subgraphs = streamed(stream_subgraphs=True, stream_resumable=True)
    inner = [name for name in with_subgraphs if name.startswith("updates|sub:")]
    assert len(inner) == 1, with_subgraphs  # the subgraph's one node, `inner`
    assert with_subgraphs.count("updates") == 3  # greet, sub, finish
    without = streamed()
    assert [name for name in without if "|" in name] == [] and without.count("updates") == 3


def test_debug_tasks_checkpoints_and_events_arrive_with_the_references_shapes(server, keys) -> None:  # noqa: ANN001
    sdk = sdk_of(server, keys["alice"])
    tid = sdk.threads.create()["thread_id"]
    modes = ["debug", "tasks", "checkpoints", "events"]
    parts = list(sdk.runs.stream(tid, GRAPH, input={}, stream_mode=modes))
    by_mode: dict[str, list] = {mode: [] for mode in modes}
    for part in parts:
        if part.event in by_mode:
            by_mode[part.event].append(part.data)
    assert all(by_mode.values()), {mode: len(data) for mode, data in by_mode.items()}

    debug_types = {item["type"] for item in by_mode["debug"]}
    assert debug_types == {"checkpoint", "task", "task_result"}
    debug_checkpoints = [d["payload"] for d in by_mode["debug"] if d["type"] == "checkpoint"]
    assert all(p["checkpoint"]["thread_id"] == tid for p in debug_checkpoints)
    assert debug_checkpoints[-1]["next"] == [] and debug_checkpoints[0]["parent_checkpoint"] is None

    started = [t["name"] for t in by_mode["tasks"] if "input" in t]
    finished = [t["name"] for t in by_mode["tasks"] if "result" in t]
    assert started == finished == ["greet", "sub", "finish"]
    # `checkpoints` are LangGraph's own chunks: their tasks keep `state`, no `checkpoint`.
    assert [c["metadata"]["step"] for c in by_mode["checkpoints"]] == [-1, 0, 1, 2, 3]
    assert all("config" in c and "checkpoint" not in c for c in by_mode["checkpoints"])

    kinds = {(event["event"], event["name"]) for event in by_mode["events"]}
    assert ("on_chain_start", "greet") in kinds and ("on_chain_end", "finish") in kinds
    root_streams = [e for e in by_mode["events"] if e["event"] == "on_chain_stream"]
    assert all(e["parent_ids"] for e in root_streams)  # the root's own are the modes' events


def test_join_stream_keeps_the_modes_asked_for(server, keys) -> None:  # noqa: ANN001
    sdk = sdk_of(server, keys["alice"])
    tid = sdk.threads.create()["thread_id"]
    run = sdk.runs.create(tid, GRAPH, input={}, stream_mode=["tasks", "values"])
    sdk.runs.join(tid, run["run_id"])
    joined = [part.event for part in sdk.runs.join_stream(tid, run["run_id"], stream_mode="tasks")]
    assert set(joined) - {"metadata", "end"} == {"tasks"} and joined.count("tasks") == 6


def test_durability_exit_writes_fewer_checkpoints_than_sync(server, keys, api_backend) -> None:  # noqa: ANN001
    sdk = sdk_of(server, keys["alice"])
    counts = {}
    for durability in ("sync", "async", "exit"):
        tid = sdk.threads.create()["thread_id"]
        values = sdk.runs.wait(tid, GRAPH, input={}, durability=durability)
        assert values["steps"] == ["greet", "finish"]  # the same run, whatever its durability
        assert sdk.threads.get_state(tid)["values"]["steps"] == ["greet", "finish"]
        counts[durability] = checkpoints_of(api_backend, tid)
    # checkpoint_during false is exit, as the reference maps it.
    tid = sdk.threads.create()["thread_id"]
    sdk.runs.wait(tid, GRAPH, input={}, checkpoint_during=False)
    counts["checkpoint_during=false"] = checkpoints_of(api_backend, tid)
    print(f"FIGURE checkpoints per run of the options graph: {counts}")
    assert counts["exit"] < counts["sync"] and counts["async"] == counts["sync"]
    assert counts["checkpoint_during=false"] == counts["exit"]
