"""`async def` nodes run in a prefork worker (they failed every run: the attempt drove only
graph.stream()), and graph factories are taken as the LangGraph Agent Server takes them.
The full matrix (sync, async, mixed x pools x cancel, rollback, kill) is
tests/integration/test_graph_matrix.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runqueue import RunStatus, SyncRunManager, create_app
from tests import async_graph_apps
from tests.support import Backend, WorkerProcess

APP = "tests.async_graph_apps:app"


@pytest.fixture(scope="module")
def graphs(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncRunManager]:
    """A prefork worker of the async graphs' app, and a manager of the same app."""
    settings = backend.settings.with_overrides(app=APP, imports="")
    log = Path(tmp_path_factory.mktemp("async-graphs")) / "worker.log"
    worker = WorkerProcess(settings, log).start()
    app = create_app(backend.settings, name=f"async-{uuid.uuid4().hex[:6]}")
    async_graph_apps.register(app)
    try:
        yield SyncRunManager(app)
    finally:
        worker.stop()


def thread() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize(
    ("assistant", "log"),
    [
        ("slow", ["async work"]),
        ("mixed", ["sync count", "async work"]),
        ("managed", ["resource used"]),
        ("planned", ["sync count"]),
    ],
)
def test_a_graph_with_async_nodes_runs_to_success(graphs, assistant, log):
    run = graphs.create_or_reject(thread(), assistant, kwargs={"input": {"pause": 0.05}})
    done = graphs.join(run.run_id, timeout=60)
    assert done.status is RunStatus.success, done.error
    assert done.result["log"] == log
    assert graphs.state(run.thread_id).values["log"] == log


def test_a_factory_taking_the_config_is_built_for_each_run(graphs):
    first = graphs.create_or_reject(
        thread(), "per_run", kwargs={"input": {}, "config": {"configurable": {"label": "a"}}}
    )
    second = graphs.create_or_reject(
        thread(), "per_run", kwargs={"input": {}, "config": {"configurable": {"label": "b"}}}
    )
    assert graphs.join(first.run_id, timeout=60).result["log"] == ["label a"]
    assert graphs.join(second.run_id, timeout=60).result["log"] == ["label b"]


def test_a_node_raising_system_exit_ends_its_run_in_error_not_running_forever(graphs):
    run = graphs.create_or_reject(thread(), "exits", kwargs={"input": {}})
    done = graphs.join(run.run_id, timeout=60)
    assert done.status is RunStatus.error
    assert "SystemExit" in done.error


def test_a_run_ends_only_after_the_sync_work_its_graph_left_behind(graphs, tmp_path):
    """An async node that stops waiting for a sync call (wait_for on to_thread) leaves it
    running in the executor: the run's success must come after that call, or the call
    would overlap the thread's next run."""
    marker = tmp_path / "left-behind"
    run = graphs.create_or_reject(thread(), "gives_up", kwargs={"input": {"marker": str(marker)}})
    done = graphs.join(run.run_id, timeout=60)
    assert done.status is RunStatus.success, done.error
    assert marker.read_text() == "done"
