"""A thread's history and time travel over HTTP (`runqueue serve`, a prefork worker,
PostgreSQL + Redis): the history newest first with its parent links, the state at a
checkpoint, state updates (on an interrupted thread, then resumed), their refusals, a plain
assistant's history, `runqueue history`, and updates racing runs on one thread."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_sync_client

from tests.api_support import ServerProcess
from tests.support import as_process, settings_env, wait_until

pytestmark = pytest.mark.integration

AGENT = "agent"  # tests/api_graphs.py: work -> review (interrupt() if `ask`) -> respond
UPDATES = 20  # state updates racing runs on one thread


def http(server: ServerProcess, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=30)


def new_thread(api: httpx.Client, **body: Any) -> str:
    response = api.post("/threads", json=body)
    assert response.status_code == 200, response.text
    return response.json()["thread_id"]


def wait_run(api: httpx.Client, thread_id: str, **body: Any) -> Any:
    response = api.post(f"/threads/{thread_id}/runs/wait", json={"assistant_id": AGENT, **body})
    assert response.status_code == 200, response.text
    return response.json()


def history(api: httpx.Client, thread_id: str, **body: Any) -> list[dict[str, Any]]:
    response = api.post(f"/threads/{thread_id}/history", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def ids(states: list[dict[str, Any]]) -> list[str]:
    return [state["checkpoint"]["checkpoint_id"] for state in states]


def assert_linear(states: list[dict[str, Any]]) -> None:
    """Newest first, each checkpoint's parent is the entry after it; the oldest has none."""
    parents = [(state["parent_checkpoint"] or {}).get("checkpoint_id") for state in states]
    assert parents == [*ids(states)[1:], None], "the history is not one line"


@pytest.fixture(scope="module")
def api(server: ServerProcess, keys: dict[str, str]) -> httpx.Client:
    with http(server, keys["alice"]) as client:
        yield client


def test_history_newest_first_with_parents_and_the_state_at_each(api) -> None:  # noqa: ANN001
    tid = new_thread(api)
    assert history(api, tid) == []  # no run yet: no state
    wait_run(api, tid, input={})
    states = api.get(f"/threads/{tid}/history").json()  # GET: limit 10 by default
    assert [(s["metadata"]["source"], s["metadata"]["step"]) for s in states] == [
        ("loop", 3), ("loop", 2), ("loop", 1), ("loop", 0), ("input", -1),
    ]  # fmt: skip
    assert_linear(states)
    assert [s["next"] for s in states] == [[], ["respond"], ["review"], ["work"], ["__start__"]]
    assert states[0]["values"]["steps"] == ["work", "review", "respond"]
    assert {s["checkpoint"]["thread_id"] for s in states} == {tid}
    assert all(s["checkpoint_id"] == s["checkpoint"]["checkpoint_id"] for s in states)

    latest = api.get(f"/threads/{tid}/state").json()
    assert latest["checkpoint"] == states[0]["checkpoint"]
    assert latest["parent_checkpoint"] == states[0]["parent_checkpoint"]

    # limit, before (an id or a checkpoint object), metadata, one checkpoint
    assert ids(history(api, tid, limit=2)) == ids(states)[:2]
    assert ids(history(api, tid, before=ids(states)[2])) == ids(states)[3:]
    assert ids(history(api, tid, before={"checkpoint_id": ids(states)[2]}, limit=1)) == [
        ids(states)[3]
    ]
    config = {"configurable": {"checkpoint_id": ids(states)[3]}}  # the JS client's form
    assert ids(history(api, tid, before=config)) == ids(states)[4:]
    older = api.get(f"/threads/{tid}/history", params={"limit": 1, "before": ids(states)[0]})
    assert ids(older.json()) == [ids(states)[1]]
    assert ids(history(api, tid, metadata={"source": "input"})) == [ids(states)[-1]]
    assert ids(history(api, tid, checkpoint={"checkpoint_id": ids(states)[2]})) == [ids(states)[2]]

    # the state at a checkpoint: GET by id, POST with the checkpoint object
    at = api.get(f"/threads/{tid}/state/{ids(states)[2]}").json()
    assert (at["values"], at["next"], at["checkpoint"]) == (
        states[2]["values"], ["review"], states[2]["checkpoint"],
    )  # fmt: skip
    posted = api.post(
        f"/threads/{tid}/state/checkpoint",
        json={"checkpoint": {"checkpoint_id": ids(states)[2]}, "subgraphs": True},
    ).json()
    assert posted["checkpoint"] == at["checkpoint"] and posted["values"] == at["values"]
    assert api.get(f"/threads/{tid}/state", params={"subgraphs": "true"}).json() == latest

    unknown = api.get(f"/threads/{tid}/state/1f000000-0000-6000-8000-000000000000")
    assert unknown.status_code == 404 and "no checkpoint" in unknown.json()["detail"]
    assert api.get(f"/threads/{tid}/state/bad%20id").status_code == 422
    assert api.post(f"/threads/{tid}/history", json={"limit": 0}).status_code == 422
    assert api.post(f"/threads/{tid}/history", json={"select": ["values"]}).status_code == 422


def test_a_subgraphs_state_and_history(api) -> None:  # noqa: ANN001
    """tests/option_graphs.py: greet -> sub (a subgraph: inner) -> finish."""
    tid = new_thread(api)
    stopped = api.post(
        f"/threads/{tid}/runs/wait",
        json={"assistant_id": "options", "input": {}, "interrupt_before": ["sub"]},
    )
    assert stopped.status_code == 200, stopped.text
    (task,) = api.get(f"/threads/{tid}/state").json()["tasks"]
    assert task["name"] == "sub" and task["state"] is None
    namespace = task["checkpoint"]["checkpoint_ns"]
    assert namespace.startswith("sub:") and task["checkpoint"]["thread_id"] == tid
    (nested,) = api.get(f"/threads/{tid}/state", params={"subgraphs": "true"}).json()["tasks"]
    assert nested["checkpoint"] is None and nested["state"]["next"] == []  # not started yet

    assert api.post(
        f"/threads/{tid}/runs/wait", json={"assistant_id": "options", "input": None}
    ).is_success
    inner = history(api, tid, checkpoint={"checkpoint_ns": namespace})
    assert [s["metadata"]["source"] for s in inner] == ["loop", "loop", "input"]
    assert inner[0]["values"] == {"inner": "done"}
    assert {s["checkpoint"]["checkpoint_ns"] for s in inner} == {namespace}
    assert_linear(inner)
    at = api.post(
        f"/threads/{tid}/state/checkpoint", json={"checkpoint": {"checkpoint_ns": namespace}}
    ).json()
    assert at["checkpoint"] == inner[0]["checkpoint"]
    assert history(api, tid)[0]["values"]["steps"] == ["greet", "finish"]


def test_update_an_interrupted_thread_then_resume(api) -> None:  # noqa: ANN001
    tid = new_thread(api)
    wait_run(api, tid, input={"ask": True})
    before = history(api, tid, limit=10)
    assert before[0]["next"] == ["review"] and before[0]["interrupts"]

    response = api.post(f"/threads/{tid}/state", json={"values": {"steps": ["human"]}})
    assert response.status_code == 200, response.text
    written = response.json()
    assert set(written) == {"checkpoint", "configurable", "checkpoint_id"}
    assert written["checkpoint"] == written["configurable"]
    assert (written["checkpoint"]["thread_id"], written["checkpoint"]["checkpoint_ns"]) == (tid, "")

    after = history(api, tid, limit=10)
    assert ids(after) == [written["checkpoint_id"], *ids(before)]  # one more, on top
    assert after[0]["metadata"]["source"] == "update" and "run_id" not in after[0]["metadata"]
    assert after[0]["parent_checkpoint"] == before[0]["checkpoint"]
    assert after[0]["values"]["steps"] == ["work", "human"] and after[0]["next"] == ["review"]
    thread = api.get(f"/threads/{tid}").json()
    assert thread["status"] == "interrupted" and thread["values"]["steps"] == ["work", "human"]

    resumed = wait_run(api, tid, command={"resume": "yes"})
    assert resumed["steps"] == ["work", "human", "review", "respond"]
    assert resumed["answer"] == "yes"
    final = history(api, tid, limit=20)
    assert_linear(final)
    assert ids(final)[2] == written["checkpoint_id"]  # the resume went on from the update

    # An update after an older checkpoint: a new head whose parent is that checkpoint.
    oldest = ids(final)[-1]
    forked = api.post(
        f"/threads/{tid}/state",
        json={"values": {"steps": ["again"]}, "checkpoint": {"checkpoint_id": oldest}},
    ).json()
    head = history(api, tid, limit=1)[0]
    assert head["checkpoint"]["checkpoint_id"] == forked["checkpoint_id"]
    assert head["parent_checkpoint"]["checkpoint_id"] == oldest


def test_update_refusals_leave_the_history_as_it_was(server, keys, api) -> None:  # noqa: ANN001
    fresh = new_thread(api)
    no_graph = api.post(f"/threads/{fresh}/state", json={"values": {"steps": ["x"]}})
    assert no_graph.status_code == 400 and "no graph" in no_graph.json()["detail"]

    # No run yet, but the thread's metadata names its graph: the update makes its first state.
    named = new_thread(api, metadata={"graph_id": AGENT})
    assert api.post(f"/threads/{named}/state", json={"values": {"steps": ["a"]}}).is_success
    assert history(api, named)[0]["values"] == {"steps": ["a"]}

    tid = new_thread(api)
    wait_run(api, tid, input={})
    kept = ids(history(api, tid, limit=100))
    refusals = {
        "unknown node": (422, {"values": {"steps": ["x"]}, "as_node": "no-such-node"}),
        "not an object": (422, {"values": [{"steps": ["x"]}]}),
        "unknown checkpoint": (
            404,
            {"values": {}, "checkpoint": {"checkpoint_id": "1f000000-0000-6000-8000-000000000000"}},
        ),
        "unknown field": (422, {"values": {}, "bogus": 1}),
        # A reducer given what it cannot take (operator.add of a list and a str: TypeError).
        "a value the reducer refuses": (422, {"values": {"steps": "x"}, "as_node": "work"}),
        "a key the state does not have": (422, {"values": {"stpes": ["x"]}, "as_node": "work"}),
    }
    for name, (code, body) in refusals.items():
        response = api.post(f"/threads/{tid}/state", json=body)
        assert (response.status_code, "detail" in response.json()) == (code, True), name
    with http(server, keys["bob"]) as bob:  # another user's thread is not found
        assert bob.post(f"/threads/{tid}/state", json={"values": {}}).status_code == 404
        assert bob.post(f"/threads/{tid}/history", json={}).status_code == 404
    assert api.post("/threads/no-such-thread/history", json={}).status_code == 404
    # A metadata key both databases' savers filter alike, or 422 (SQLite's refuses "a b").
    for key in ("a b", "source.x", "it's"):
        answer = api.post(f"/threads/{tid}/history", json={"metadata": {key: 1}})
        assert (answer.status_code, key in answer.json()["detail"]) == (422, True), key

    run = api.post(
        f"/threads/{tid}/runs", json={"assistant_id": AGENT, "input": {"seconds": 1}}
    ).json()
    busy = api.post(f"/threads/{tid}/state", json={"values": {"steps": ["x"]}})
    assert busy.status_code == 409 and run["run_id"] in busy.json()["detail"]
    assert api.get(f"/threads/{tid}/runs/{run['run_id']}/join").status_code == 200
    assert ids(history(api, tid, limit=100))[-len(kept) :] == kept
    assert all(s["metadata"]["source"] != "update" for s in history(api, tid, limit=100))


def test_a_plain_assistants_history_is_its_checkpoints(api, api_backend) -> None:  # noqa: ANN001
    tid = new_thread(api)
    runs = []
    for n in (1, 2, 3):
        response = api.post(
            f"/threads/{tid}/runs/wait", json={"assistant_id": "echo", "input": {"n": n}}
        )
        assert response.status_code == 200, response.text
        runs.append(api.get(f"/threads/{tid}/runs").json()[0]["run_id"])
    states = history(api, tid)
    assert [s["values"]["last"] for s in states] == [{"n": 3}, {"n": 2}, {"n": 1}]
    assert [s["metadata"]["run_id"] for s in states] == runs[::-1]
    assert_linear(states)
    assert all(s["checkpoint_id"].isdigit() for s in states)
    assert ids(history(api, tid, before=ids(states)[0], limit=1)) == [ids(states)[1]]
    assert ids(history(api, tid, metadata={"run_id": runs[0]})) == [ids(states)[2]]
    assert history(api, tid, metadata={"source": "loop"}) == []
    at = api.get(f"/threads/{tid}/state/{ids(states)[1]}").json()
    assert at["values"]["last"] == {"n": 2} and at["parent_checkpoint"] == states[2]["checkpoint"]
    assert api.get(f"/threads/{tid}/state/not-a-number").status_code == 404
    refused = api.post(f"/threads/{tid}/state", json={"values": {"turns": 0}})
    assert refused.status_code == 400 and "not a graph" in refused.json()["detail"]

    # The command line: the same history, as JSON and as a table; an unknown thread, one line.
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            as_process(["runqueue", "history", *args]),
            env=settings_env(api_backend.settings) | {"COLUMNS": "250"},
            capture_output=True,
            text=True,
            timeout=60,
        )

    listed = cli(tid, "--json", "--limit", "2")
    assert listed.returncode == 0, listed.stderr
    assert [s["checkpoint_id"] for s in json.loads(listed.stdout)] == ids(states)[:2]
    table = cli(tid)
    assert table.returncode == 0 and f"thread {tid}: 3 checkpoints" in table.stdout
    assert all(cid in table.stdout for cid in ids(states)) and runs[0] in table.stdout
    missing = cli("no-such-thread")
    assert missing.returncode == 1 and missing.stderr.strip() == "error: no thread no-such-thread"
    # Before a checkpoint the thread does not have: one line, not an empty or whole history.
    unknown = cli(tid, "--before", "999999")
    assert unknown.returncode == 1 and unknown.stderr.startswith("error: "), unknown.stderr
    assert "999999" in unknown.stderr and len(unknown.stderr.splitlines()) == 1
    assert api.post(f"/threads/{tid}/history", json={"before": "999999"}).status_code == 404


def test_updates_racing_runs_leave_one_line_and_never_land_inside_a_run(  # noqa: ANN001
    server, keys, api
) -> None:
    """UPDATES state updates race runs (enqueue and reject) on one thread: each is refused
    (409) or lands between two runs. The history stays one line (every checkpoint's parent is
    the one after it), and each run's checkpoints are one unbroken stretch of it."""
    sdk = get_sync_client(url=server.url, api_key=keys["alice"])
    tid = new_thread(api)
    first = sdk.runs.create(tid, AGENT, input={"seconds": 1})
    wait_until(
        lambda: sdk.runs.get(tid, first["run_id"])["status"] == "running", message="first run"
    )
    runs = [first["run_id"]]
    creating = threading.Event()
    creating.set()

    def create_runs() -> None:
        for n in range(6):
            strategy = "enqueue" if n % 2 == 0 else "reject"
            body = {"assistant_id": AGENT, "input": {"seconds": 0.1}}
            body["multitask_strategy"] = strategy
            response = api.post(f"/threads/{tid}/runs", json=body)
            assert response.status_code in (200, 409), response.text
            if response.status_code == 200:
                runs.append(response.json()["run_id"])
            time.sleep(0.15)
        creating.clear()

    def update(n: int) -> tuple[int, str | None]:
        if n >= UPDATES - 5:  # the last ones once every run has ended, all at once
            wait_until(lambda: not creating.is_set(), message="the runs created")
            for run_id in list(runs):
                sdk.runs.join(tid, run_id)
        else:
            time.sleep(n * 0.1)  # spread over the runs
        with http(server, keys["alice"]) as own:
            response = own.post(f"/threads/{tid}/state", json={"values": {"steps": [f"u{n}"]}})
        assert response.status_code in (200, 409), response.text
        return response.status_code, response.json().get("checkpoint_id")

    with ThreadPoolExecutor(UPDATES + 1) as pool:
        creator = pool.submit(create_runs)
        outcomes = list(pool.map(update, range(UPDATES)))
        creator.result()
    states = history(api, tid, limit=1000)
    assert_linear(states)
    written = [cid for code, cid in outcomes if code == 200]
    updates = [s for s in states if s["metadata"]["source"] == "update"]
    assert sorted(ids(updates)) == sorted(written)  # each landed once, and nothing else did
    by_run = [s["metadata"].get("run_id") for s in states]
    for run_id in runs:
        where = [i for i, owner in enumerate(by_run) if owner == run_id]
        assert where == list(range(where[0], where[-1] + 1)), f"run {run_id} was cut by an update"
    assert {owner for owner in by_run if owner} == set(runs)
    codes = [code for code, _ in outcomes]
    assert 409 in codes and 200 in codes, codes  # the race happened both ways
