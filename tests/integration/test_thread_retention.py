"""Threads' ttl, swept by a real worker's maintenance pass (every 0.5 s here), on both
backends: an expired thread is gone within a pass or so, with its runs, their history and
streams, its plain checkpoints and its rows in LangGraph's tables; a keep_latest one keeps
its latest checkpoint alone; one with a run in flight is untouched until the run ends; no
other thread is touched. Copies and prunes keep or cut every row of a thread's state.

Here on the embedded backend (SQLite + filesystem broker); the same scenarios run on
PostgreSQL + Redis in test_conformance_threads.py, on the worker of that file's runqueue
server (sharing its processes keeps the suite fast)."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select, text

from runqueue import RunStatus
from runqueue.store.models import CheckpointRow, Run, RunEventRow, Thread
from runqueue.store.thread_retention import graph_tables
from tests.support import Backend, as_process, make_backend, settings_env, wait_until

pytestmark = pytest.mark.integration

TTL_MINUTES = 0.01  # 0.6 s: the reference takes fractions of a minute
PASS_SECONDS = 0.5  # tests.support.make_backend's maintenance_interval


def new_thread(manager, **options) -> str:  # noqa: ANN001, ANN003
    return manager.create_thread(f"ttl-{uuid.uuid4().hex[:12]}", **options).thread_id


def run(manager, thread_id: str, assistant: str, **kwargs) -> str:  # noqa: ANN001, ANN003
    created = manager.create(thread_id, assistant, kwargs=kwargs)
    assert manager.join(created.run_id, timeout=60).status is RunStatus.success
    return created.run_id


def rows(manager, thread_id: str) -> dict[str, int]:  # noqa: ANN001
    """The thread's rows in every table that holds some of it."""
    counts = {}
    with manager.store.reading() as conn:
        for table, column in (
            (Thread, Thread.thread_id),
            (Run, Run.thread_id),
            (RunEventRow, RunEventRow.thread_id),
            (CheckpointRow, CheckpointRow.thread_id),
        ):
            query = select(func.count()).select_from(table).where(column == thread_id)
            counts[table.__tablename__] = conn.execute(query).scalar_one()
        for table in sorted(graph_tables(conn)):
            query = text(f"SELECT count(*) FROM {table} WHERE thread_id = :t")
            counts[table] = conn.execute(query, {"t": thread_id}).scalar_one()
    return counts


def graph_heads(manager, thread_id: str) -> list[tuple[str, int]]:  # noqa: ANN001
    """(namespace, checkpoints) of the thread in LangGraph's `checkpoints` table."""
    with manager.store.reading() as conn:
        query = text(
            "SELECT checkpoint_ns, count(*) FROM checkpoints WHERE thread_id = :t "
            "GROUP BY checkpoint_ns ORDER BY checkpoint_ns"
        )
        return [tuple(row) for row in conn.execute(query, {"t": thread_id})]


def streams_left(manager, run_ids: list[str]) -> list[str]:  # noqa: ANN001
    return [r for r in run_ids if manager.runtime.stream.transport.last_seq(r) is not None]


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """The embedded backend alone (tests/conftest.py's `worker` and `manager` use it)."""
    backend = make_backend("embedded", tmp_path_factory.mktemp("retention"))
    yield backend
    backend.close()


def test_expired_threads_are_swept_and_nothing_else(manager, worker) -> None:  # noqa: ANN001
    sweep_scenario(manager)


def test_a_copy_has_every_row_of_the_state_and_prune_cuts_it(manager, worker) -> None:  # noqa: ANN001
    copy_scenario(manager)


def test_keep_latest_leaves_a_delta_channel_graph_whole(manager) -> None:  # noqa: ANN001
    delta_scenario(manager)


def delta_scenario(manager) -> None:  # noqa: ANN001
    """A graph whose checkpoints mark a DeltaChannel rebuilds its latest value from the older
    ones: keep_latest leaves it whole (not counted), as LangGraph's own prune refuses it."""
    thread_id = new_thread(manager)
    postgres = manager.store.engine.dialect.name == "postgresql"
    as_json = "CAST({} AS jsonb)" if postgres else "CAST({} AS BLOB)"  # each saver's column
    insert = text(
        "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, checkpoint, "
        f"metadata) VALUES (:t, '', :id, {as_json.format(':c')}, {as_json.format(':m')})"
    )
    with manager.store.transaction() as conn:
        for n, metadata in enumerate(('{"step": 1}', '{"counters_since_delta_snapshot": {}}')):
            conn.execute(insert, {"t": thread_id, "id": f"1ef-{n}", "c": "{}", "m": metadata})
    assert manager.prune_threads([thread_id], strategy="keep_latest") == 0
    assert graph_heads(manager, thread_id) == [("", 2)]
    assert manager.prune_threads([thread_id], strategy="delete") == 1
    assert rows(manager, thread_id)["checkpoints"] == 0


def test_prune_threads_on_the_command_line(backend, manager, worker) -> None:  # noqa: ANN001
    busy = new_thread(manager)
    in_flight = manager.create(busy, "steps", kwargs={"steps": 100, "delay": 0.05})
    done = new_thread(manager)
    run(manager, done, "echo")
    command = ["runqueue", "prune-threads", done, busy, "no-such-thread"]
    pruned = subprocess.run(
        as_process(command),
        env=settings_env(backend.settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.strip() == (
        "pruned 1 thread of 3 (delete); 2 left out (a run in flight, or no such thread)"
    )
    assert manager.get_thread(done) is None and rows(manager, done)["runs"] == 0
    assert manager.get_thread(busy) is not None
    manager.cancel(in_flight.run_id)
    refused = subprocess.run(
        as_process(["runqueue", "prune-threads", done, "--strategy", "archive"]),
        env=settings_env(backend.settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "delete or keep_latest" in refused.stderr


def sweep_scenario(manager) -> None:  # noqa: ANN001
    """Expired, keep_latest, busy and other threads through real maintenance passes."""
    gone = new_thread(manager)
    gone_runs = [
        run(manager, gone, "research", input={"topic": "gone"}),
        run(manager, gone, "echo"),
    ]
    kept = new_thread(manager)
    for n in (1, 2):
        run(manager, kept, "research", input={"topic": f"kept {n}"})
        run(manager, kept, "echo", n=n)
    other = new_thread(manager)  # no ttl
    run(manager, other, "research", input={"topic": "other"})
    later = new_thread(manager, ttl=60)  # an hour to go
    run(manager, later, "echo")
    busy = new_thread(manager)
    in_flight = manager.create(busy, "steps", kwargs={"steps": 100, "delay": 0.1})
    untouched = {thread: rows(manager, thread) for thread in (other, later)}
    busy_rows = rows(manager, busy)
    kept_state = manager.state(kept)  # its latest run's: echo's plain checkpoint
    kept_graph = manager.app.tasks["research"].thread_state(kept)
    assert len(graph_heads(manager, kept)) == 1 and graph_heads(manager, kept)[0][1] > 2
    assert rows(manager, kept)["run_checkpoints"] == 2

    # Their last activity now: each expires 1.2 s from here, by the database's clock.
    started = time.monotonic()
    manager.patch_thread(gone, ttl={"strategy": "delete", "ttl": TTL_MINUTES})
    manager.patch_thread(kept, ttl={"strategy": "keep_latest", "ttl": TTL_MINUTES})
    manager.patch_thread(busy, ttl=TTL_MINUTES)
    wait_until(lambda: manager.get_thread(gone) is None, 15, message="the expired thread's sweep")
    swept_after = time.monotonic() - started
    print(f"ttl sweep: gone {swept_after - TTL_MINUTES * 60:.2f}s after expiry")
    wait_until(lambda: graph_heads(manager, kept) == [("", 1)], 5, message="keep_latest")

    assert swept_after + 0.1 >= TTL_MINUTES * 60  # not before it expired
    assert swept_after < TTL_MINUTES * 60 + 4 * PASS_SECONDS + 1.0  # within a pass or so
    assert set(rows(manager, gone).values()) == {0}
    assert streams_left(manager, gone_runs) == []

    left = rows(manager, kept)
    assert (left["threads"], left["runs"], left["run_checkpoints"]) == (1, 4, 1)
    assert manager.checkpoints(kept)[0].values == {"turns": 2, "last": {"n": 2}}
    state = manager.state(kept)
    assert (state.values, state.next, state.checkpoint_id) == (
        kept_state.values,
        kept_state.next,
        kept_state.checkpoint_id,
    )
    graph = manager.app.tasks["research"].thread_state(kept)
    assert (graph.values, graph.checkpoint_id) == (kept_graph.values, kept_graph.checkpoint_id)

    assert manager.get(in_flight.run_id).status in (RunStatus.pending, RunStatus.running)
    assert {thread: rows(manager, thread) for thread in untouched} == untouched
    now_busy = rows(manager, busy)  # its run goes on writing checkpoints: none deleted
    assert (now_busy["threads"], now_busy["runs"]) == (1, 1)
    assert now_busy["run_checkpoints"] >= busy_rows["run_checkpoints"]
    # Only its run in flight kept it: once that ends, its ttl runs out like any other.
    manager.cancel(in_flight.run_id)
    manager.join(in_flight.run_id, timeout=30)
    wait_until(lambda: manager.get_thread(busy) is None, 15, message="the sweep after the run")
    assert {t: rows(manager, t) for t in (other, later)} == {
        t: untouched[t] for t in (other, later)
    }


def copy_scenario(manager) -> None:  # noqa: ANN001
    """A copy's rows equal the source's in every state table, and read back as the same
    history; it owes the source nothing; prune deletes or cuts them."""
    source = new_thread(manager, metadata={"team": "a"})
    run_ids = [run(manager, source, "research", input={"topic": f"copy {n}"}) for n in (1, 2)]
    run_ids.append(run(manager, source, "echo", n=3))
    copy = manager.copy_thread(source).thread_id
    assert manager.get_thread(copy).thread.metadata == {
        "team": "a",
        "graph_id": "echo",  # the source's latest run's, stamped when it was created
        "assistant_id": "echo",
    }
    assert manager.list_by_thread(copy) == []
    of_source, of_copy = rows(manager, source), rows(manager, copy)
    state_tables = set(of_source) - {"threads", "runs", "run_events"}
    assert {t: of_copy[t] for t in state_tables} == {t: of_source[t] for t in state_tables}
    assert (of_copy["runs"], of_copy["run_events"]) == (0, 0)
    history = graph_history(manager, copy)
    assert history == graph_history(manager, source) and len(history) > 4
    plain = [(c.values, c.run_id) for c in manager.checkpoints(copy)]
    assert plain == [(c.values, None) for c in manager.checkpoints(source)]
    graph_state = manager.app.tasks["research"].thread_state(source)

    assert manager.prune_threads([source], strategy="delete") == 1
    assert set(rows(manager, source).values()) == {0}
    assert streams_left(manager, run_ids) == []
    assert graph_history(manager, copy) == history
    copied_state = manager.app.tasks["research"].thread_state(copy)
    assert (copied_state.values, copied_state.next) == (graph_state.values, graph_state.next)
    assert manager.state(copy).values == {"turns": 1, "last": {"n": 3}}  # its metadata's echo

    assert manager.prune_threads([copy, source], strategy="keep_latest") == 1
    assert graph_heads(manager, copy) == [("", 1)]
    assert [c.values for c in manager.checkpoints(copy)] == [{"turns": 1, "last": {"n": 3}}]
    kept_state = manager.app.tasks["research"].thread_state(copy)
    assert (kept_state.values, kept_state.checkpoint_id) == (
        copied_state.values,
        copied_state.checkpoint_id,
    )


def graph_history(manager, thread_id: str) -> list[tuple[str, dict, dict]]:  # noqa: ANN001
    """The thread's LangGraph checkpoints, newest first, as the official saver reads them."""
    from runqueue.langgraph.checkpointer import RunCheckpointer

    listed = RunCheckpointer(manager.store).list({"configurable": {"thread_id": thread_id}})
    return [
        (c.config["configurable"]["checkpoint_id"], c.checkpoint["channel_values"], c.metadata)
        for c in listed
    ]


def test_a_thread_whose_prune_fails_is_set_aside_and_the_others_are_swept(
    tmp_path, monkeypatch
) -> None:  # noqa: ANN001
    """One thread that cannot be pruned (its prune made to fail here) is set aside until its
    next activity: it cannot fill every pass's batch and hold up the sweep of the others."""
    from runqueue.worker.thread_sweep import sweep_expired_threads

    backend = make_backend("embedded", tmp_path)  # no worker: this test's passes alone
    try:
        manager = backend.manager()
        failing, other = (new_thread(manager, ttl=TTL_MINUTES) for _ in range(2))
        wait_until(
            lambda: {failing, other} <= set(manager.store.expired_threads(100)),
            timeout=10,
            message="both threads to expire",
        )
        sweep = manager.store.sweep_thread

        def failing_sweep(thread_id: str):  # noqa: ANN202
            if thread_id == failing:
                raise RuntimeError("this thread's prune fails")
            return sweep(thread_id)

        monkeypatch.setattr(manager.store, "sweep_thread", failing_sweep)
        assert sweep_expired_threads(manager.runtime, limit=100) == 1
        assert manager.get_thread(other) is None
        assert manager.get_thread(failing) is not None
        assert failing not in manager.store.expired_threads(100)  # not tried at every pass
        manager.patch_thread(failing, metadata={"touched": True})  # activity: due again later
        wait_until(lambda: failing in manager.store.expired_threads(100), timeout=10)
    finally:
        backend.close()
