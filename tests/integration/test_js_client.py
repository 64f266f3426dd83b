"""The official LangGraph JS client drives these tests: `@langchain/langgraph-sdk` (its `Client`
and its React hook `useStream`), pinned in tests/js/package-lock.json and installed by `.ci/run`
with `npm ci --prefix tests/js`. Each scenario is one `node` process (tests/js/*.mjs) that prints
what it observed as one JSON line, run against the LangGraph reference server and against
runqueue, side by side as tests/integration/test_api_conformance.py starts them; both must
observe the same. In CI a missing node or tests/js/node_modules fails; elsewhere it skips."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from tests.integration.test_api_conformance import Servers, servers  # noqa: F401  (fixture)
from tests.support import REPO_ROOT

pytestmark = pytest.mark.integration

JS = REPO_ROOT / "tests" / "js"
SERVERS = ["reference", "runqueue"]
SCENARIOS = [
    *("create", "stream_history", "history", "update_state", "fork", "copy", "reconnect"),
    *("thread_stream", "count", "prune", "ttl", "crons"),
    "memory",  # the Store (tests/store_graphs.py)
]
TTL_SECONDS = "20"  # how long the ttl scenario waits for runqueue's sweep
# Node processes at a time. Each scenario has threads of its own (and count and prune their own
# metadata marker), so they run side by side; at most three graph nodes sleep at once, within
# the reference's six threads for sync nodes (see WAVES in test_api_conformance.py).
AT_ONCE = 4
STEPS = ["work", "review", "respond"]  # what one run of tests/api_graphs.py `agent` appends
CHAT = ["human: first", "ai: you said first", "human: second", "ai: you said second"]
EDITED = [*CHAT[:2], "human: second, edited", "ai: you said second, edited"]

Job = tuple[str, ...]  # (server, script, *arguments)
# The hook's packages (tests/js/package.json): the latest release, and 2.0.0 (deprecated on npm,
# an older build) whose hook sends the thread head's `checkpoint` with every submit.
HOOKS = ["@langchain/langgraph-sdk", "langgraph-sdk-2"]


def node() -> str:
    """The node binary, once tests/js has its packages; CI fails without them."""
    found = shutil.which("node")
    if found and (JS / "node_modules" / "@langchain" / "langgraph-sdk").is_dir():
        return found
    message = (
        "the JS client tests need node and tests/js/node_modules "
        f"(node: {found}); run `npm ci --prefix tests/js`"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


class NodeRuns:
    """Every job's node process, AT_ONCE at a time from the moment the servers are up (the
    longest first); a test waits for its own job's JSON line."""

    def __init__(self, binary: str, pair: Servers, jobs: list[Job]):
        self.binary = binary
        self.addresses = {
            "reference": (pair.reference, "none"),
            "runqueue": (pair.runqueue, pair.api_key),
        }
        self.pool = ThreadPoolExecutor(AT_ONCE)
        self.jobs: dict[Job, Future[subprocess.CompletedProcess[str]]] = {
            job: self.pool.submit(self.run, job) for job in jobs
        }

    def run(self, job: Job) -> subprocess.CompletedProcess[str]:
        server, script, *arguments = job
        return subprocess.run(
            [self.binary, script, *self.addresses[server], *arguments],
            cwd=JS,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def observed(self, *job: str) -> dict[str, Any]:
        """The job's JSON line; a non-zero exit fails with the step and error it names."""
        done = self.jobs[job].result()
        lines = done.stdout.strip().splitlines()
        observed = json.loads(lines[-1]) if lines else {}
        assert done.returncode == 0, (
            f"{' '.join(job)} failed at {observed.get('failed_at')}: "
            f"{observed.get('error')}\nobserved: {observed}\nstderr: {done.stderr[-3000:]}"
        )
        return observed

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def node_runs(request: pytest.FixtureRequest, servers: Servers) -> Iterator[NodeRuns]:  # noqa: F811
    """The jobs of the servers the selected tests name (`-k reference` runs no runqueue job)."""
    selected = [item for item in request.session.items if item.module is request.module]
    wanted = {
        item.callspec.params.get("server", "runqueue") if hasattr(item, "callspec") else "runqueue"
        for item in selected
    }
    servers_wanted = [server for server in SERVERS if server in wanted]
    jobs: list[Job] = [
        (server, "use_stream.mjs", package) for package in HOOKS for server in servers_wanted
    ]
    if "runqueue" in wanted:
        jobs.append(("runqueue", "client_scenarios.mjs", "ttl", TTL_SECONDS))
    jobs += [
        (server, "client_scenarios.mjs", name) for name in SCENARIOS for server in servers_wanted
    ]
    runs = NodeRuns(node(), servers, jobs)
    yield runs
    runs.close()


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def scenario(node_runs: NodeRuns, server: str):  # noqa: ANN201
    """What one client scenario observed on this test's server."""

    def observed(name: str) -> dict[str, Any]:
        result = node_runs.observed(server, "client_scenarios.mjs", name)
        assert result.pop("scenario") == name
        return result

    return observed


def test_create_join_and_read_back(scenario):
    assert scenario("create") == {
        "created": {"status": "idle", "marked": True},
        "run_status": "pending",
        "joined": {"steps": STEPS, "reply": "all done here"},
        "thread": {"status": "idle", "steps": STEPS},
        "state": {"next": [], "steps": STEPS},
        "runs": ["success"],
        "found": [True],
    }


def test_stream_with_history_reads_as_the_hook_does(scenario):
    assert scenario("stream_history") == {
        "history_before": 0,
        "first_event": "metadata",
        "events": ["messages", "metadata", "updates", "values"],
        "first_steps": STEPS,
        "history_first": {
            "length": 5,
            "chained": True,
            "head_next": [],
            "head_steps": STEPS,
            "sources": ["loop", "loop", "loop", "loop", "input"],
        },
        "second_steps": STEPS * 2,
        "history_second": {
            "length": 10,
            "chained": True,
            "head_steps": STEPS * 2,
            "continues_first": True,
        },
    }


def test_history_pages_filters_and_state_at_a_checkpoint(scenario):
    assert scenario("history") == {
        "all": {
            "length": 10,
            "chained": True,
            "steps": [8, 7, 6, 5, 4, 3, 2, 1, 0, -1],
            "sources": ["loop"] * 4 + ["input"] + ["loop"] * 4 + ["input"],
            "head_steps": STEPS * 2,
            "nexts": [[], ["respond"], ["review"], ["work"], ["__start__"]] * 2,
        },
        "page_is_newest": True,
        "before_is_older": True,
        "input_checkpoints": ["input", "input"],
        "at_checkpoint": {"same": True, "next": ["review"], "steps": [*STEPS, "work"]},
    }


def test_update_state_on_an_interrupted_graph_then_resume(scenario):
    assert scenario("update_state") == {
        "interrupt": ["approve?"],
        "interrupted": {"next": ["review"], "steps": ["work"]},
        "update_has_checkpoint": True,
        "updated": {
            "next": ["review"],
            "steps": ["work", "edited"],
            "source": "update",
            "head": True,
        },
        "resumed": {"steps": ["work", "edited", "review", "respond"], "answer": "yes"},
        "thread_status": "idle",
        "update_while_running": 409,
        "busy_steps": STEPS,
    }


def test_fork_from_earlier_checkpoints(scenario):
    assert scenario("fork") == {
        "from_end_of_first": STEPS * 2,  # not three runs' worth: the second run is not in it
        "head_steps": STEPS * 2,
        "branches_kept": {"old_head": True, "grew_by": 5},
        "line": {"through_end_of_first": True, "through_old_head": False},
        "replay_from_work": STEPS,
        "edited": {"parent_is_source": True, "steps": ["work", "edited"], "next": ["review"]},
        "resumed_edit": ["work", "edited", "review", "respond"],
    }


def test_thread_copy(scenario):
    assert scenario("copy") == {
        "copy": {"new_id": True, "marked": True},
        "history": {"lengths": [5, 5], "same_states": True, "copy_thread_ids": [True]},
        "after_run_on_copy": [6, 3],
    }


def test_reconnect_to_a_running_stream_with_last_event_id(scenario):
    assert scenario("reconnect") == {
        "before_drop": ["metadata", "values", "custom"],
        "ids_before_drop": True,
        "running_after_drop": "running",
        "rest": {"events": ["updates", "values"] * 3, "repeated": 0, "final_steps": STEPS},
        "replay_is_everything": True,
        "run_status": "success",
    }


def test_thread_stream_shows_a_run(scenario):
    assert scenario("thread_stream") == {
        "saw_the_run_end": True,
        "events": ["metadata", "values"],
        "final_steps": STEPS,
    }


def test_count_by_metadata_and_status_after_a_patch(scenario):
    assert scenario("count") == {
        "all": 3,
        "interrupted": 1,
        "idle": 2,
        "patched": {"mark": True, "tag": "b"},
        "tagged": 1,
    }


def test_prune_deletes_the_named_threads(scenario):
    assert scenario("prune") == {
        "pruned": {"pruned_count": 2},
        "after": [404, 404, "ok"],
        "left": 1,
    }


def test_ttl_on_create_is_accepted(scenario):
    assert scenario("ttl") == {"created": "ok"}


def test_ttl_expiry_sweeps_the_thread_on_runqueue(node_runs):
    """runqueue only: the reference's in-memory runtime never sweeps (langgraph_runtime_inmem
    `Threads.sweep_ttl` is "not implemented for inmem server"; a persistent reference sweeps
    every 5 minutes or more). runqueue's maintenance pass runs every 0.5 s in tests
    (tests/support.py), and the thread's ttl is 0.02 minutes."""
    observed = node_runs.observed("runqueue", "client_scenarios.mjs", "ttl", TTL_SECONDS)
    assert observed["created"] == "ok"
    assert (observed["swept"], observed["kept"]) == (404, "ok")
    assert observed["swept_within_s"] <= 20


@pytest.mark.parametrize("package", HOOKS)
def test_use_stream_hook_submit_reload_branch_and_rejoin(node_runs, server, package):
    observed = node_runs.observed(server, "use_stream.mjs", package)
    assert (observed["hook_errors"], observed["refused"]) == ([], [])

    submitted = observed["submitted"]
    assert submitted["messages"] == CHAT
    runs = [r for r in submitted["requests"] if r["call"] == "POST /threads/{thread}/runs/stream"]
    assert len(runs) == 2
    for run in runs:  # the options the page asked for reach the server
        assert run["stream_resumable"] is True and run["stream_subgraphs"] is True
        assert run["on_disconnect"] == "continue"
    assert submitted["storage_left"] == []  # a finished run's id leaves sessionStorage
    if package == "langgraph-sdk-2":  # its second submit continues from the head's checkpoint
        assert [run["checkpoint"] for run in runs] == [False, True]

    # A reload reads the thread's history, and only that: there is no run to rejoin.
    assert observed["reloaded"] == {
        "messages": CHAT,
        "same_history": True,
        "requests": ["POST /threads/{thread}/history"],
    }

    # Editing the second message forks from the checkpoint before it; both branches remain.
    assert observed["branch_from"] == {"has_parent": True}
    branched = observed["branched"]
    assert (branched["messages"], branched["branch_options"]) == (EDITED, 2)
    forks = [r for r in branched["requests"] if r["call"] == "POST /threads/{thread}/runs/stream"]
    assert [r["checkpoint"] for r in forks] == [True]
    assert observed["other_branch"] == CHAT
    assert observed["reloaded_after_branch"] == {"messages": EDITED, "branch_options": 2}

    # A reload while a run runs rejoins it from the start (Last-Event-ID: -1), never re-creates it.
    rejoined = observed["rejoined"]
    assert rejoined["messages"] == ["human: slow", "ai: you said slow"]
    assert rejoined["run_at_reload"] == "running"
    assert rejoined["requests"][0] == {
        "call": "GET /threads/{thread}/runs/{run}/stream",
        "last_event_id": "-1",
    }
    assert not [r for r in rejoined["requests"] if r["call"].startswith("POST")]
    assert (rejoined["run"], rejoined["storage_left"]) == ("success", [])
    assert rejoined["runs"] == ["success"] * 4


def test_the_crons_client(scenario):
    assert scenario("crons") == {
        "stateless": {
            "thread_id": None,
            "on_run_completed": "keep",
            "enabled": True,
            "schedule": "0 0 1 1 *",
            "next_is_new_year": True,
            "marked": True,
        },
        "threaded": {"same_thread": True, "on_run_completed": None, "timezone": "Europe/Paris"},
        "count": 2,
        "of_thread": [True],
        "updated": {"enabled": False, "schedule": "0 0 2 1 *"},
        "disabled": [True],
        "after_delete": 0,
        "delete_again": 404,
        "bad_schedule": 422,
    }


def test_a_graph_remembers_across_threads_through_the_store(scenario):
    assert scenario("memory") == {
        "remembered": {"color": "violet", "confirmed": True},
        "recalled": {"color": "violet", "confirmed": True},
        "item": {"namespace": ["preferences"], "value": {"color": "violet"}},
        "found": [[2, "note", {"text": "hi"}]],
        "listed": 1,
        "deleted": None,
    }
