"""One attempt of a graph run: the graph streams on an event loop in its own thread
(runqueue.langgraph.graph_loop), and the run's own thread turns its chunks into run-stream
events and stays free to be stopped.

Every graph runs with LangGraph's async API, `astream` (or `astream_events` when the run asks
for the `events` mode): `async def` nodes, sync nodes and graphs mixing both run alike, with
the same guarantees. A cancel in a prefork child arrives as SIGTERM in the run's thread: the
run's status is written and the child exits, its nodes with it. Where no SIGTERM comes (a
threads or solo pool), the cancel is cooperative: the run's thread sees it between chunks,
cancels the graph's task (an async node stops at its next await; a sync node finishes its
call: graph_loop says why) and waits until no node of the run executes any more before the
run ends, so the thread's next run never overlaps it.
"""

from __future__ import annotations

import contextlib
import logging
import queue
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from langgraph.types import Command

from runqueue.errors import InvalidEventError, RunQueueError
from runqueue.langgraph.checkpointer import Fence, RunCheckpointer
from runqueue.langgraph.events import event_data, event_name, events_data, jsonable, stream_modes
from runqueue.langgraph.factories import build_for_run
from runqueue.langgraph.forks import arequire_checkpoint, fork_configurable
from runqueue.langgraph.graph_loop import GraphLoop
from runqueue.langgraph.run_options import astream_arguments, filtered_context
from runqueue.worker.run_context import RunContext
from runqueue.worker.sigterm import exit_after_run, in_prefork_child

if TYPE_CHECKING:
    from langgraph.pregel import Pregel

logger = logging.getLogger(__name__)

WAIT_SECONDS = 0.1  # the run's thread wakes this often while the graph works
EVENTS = "events"  # the mode of astream_events' own events (not a Pregel stream mode)
SETTLE_SECONDS = 2.0  # how long a finished graph's loop may take to close before it is stopped


class GraphLoopEndedError(RunQueueError):
    """The graph's event loop ended without a result: a node raised SystemExit or
    KeyboardInterrupt, which stop an event loop itself. (Raised outside an `except`.)"""


class _Finished:
    """The graph's stream ended: normally (with the thread's values) or by raising."""

    def __init__(self, values: Any = None, error: BaseException | None = None):
        self.values = values
        self.error = error


Chunk = tuple[tuple[str, ...], str, Any]


def run_graph(
    name: str,
    source: Any,
    context: RunContext,
    /,
    input: Any = None,
    config: dict[str, Any] | None = None,
    stream_mode: str | list[str] | None = None,
    command: dict[str, Any] | None = None,
    item_store: Any = None,
    **options: Any,
) -> Any:
    """Run the graph assistant `name` (its registered `source`) for one attempt: stream its
    chunks, return the thread's values (with `__interrupt__` when it stopped at an
    interrupt(), as LangGraph's invoke() returns them). `item_store`: the BaseStore its
    nodes get (runqueue.langgraph.item_store.store_for_run)."""
    fence = Fence(context.run_id, context.claim_token, context.write_timeout)
    fork_from = options.get("checkpoint_id")
    run_config = _run_config(context, config, fork_from)
    modes = stream_modes(stream_mode)
    subgraphs = bool(options.get("stream_subgraphs"))
    payload = _command(command) if command else input
    chunks: queue.Queue[Chunk | _Finished] = queue.Queue()

    async def produce() -> None:
        try:
            async with contextlib.AsyncExitStack() as stack:
                graph = await build_for_run(name, source, run_config, stack)
                checkpointer = RunCheckpointer(context.store, fence, executor=runner.writes)
                stores = {} if item_store is None else {"store": item_store}  # get_store()
                graph = graph.copy(update={"checkpointer": checkpointer, **stores})
                if fork_from is not None:
                    await arequire_checkpoint(checkpointer, run_config)
                arguments = astream_arguments(options)
                if "context" in arguments:
                    arguments["context"] = filtered_context(graph, arguments["context"])
                last_values: Any = None
                stream = _stream(graph, payload, run_config, modes, arguments)
                async for namespace, mode, chunk in stream:
                    chunks.put((namespace, mode, chunk))
                    if mode == "values" and not namespace:
                        last_values = chunk
                if last_values is None:  # nothing ran (a resume with nothing left to do)
                    last_values = await _state_values(graph, run_config)
            chunks.put(_Finished(values=last_values))
        except BaseException as error:  # re-raised in the run's thread: a node's SystemExit
            chunks.put(_Finished(error=error))  # or KeyboardInterrupt too, never a silent end
            raise

    runner = GraphLoop(f"graph-{context.run_id}", produce)
    runner.start()
    # In a prefork child a cancel arrives as SIGTERM (from the revoke, or from the heartbeat
    # when the revoke was lost); elsewhere the run asks the database between chunks.
    cooperative = not in_prefork_child()
    try:
        while True:
            try:
                item = chunks.get(timeout=WAIT_SECONDS)
            except queue.Empty:
                if cooperative:
                    context.raise_if_cancelled()
                if not runner.is_alive() and chunks.empty():
                    ended = runner.ended_by
                    raise GraphLoopEndedError(f"no result from the graph: {ended!r}") from None
                continue
            if isinstance(item, _Finished):
                _leave_nothing_running(runner)
                if item.error is not None:
                    raise item.error
                return jsonable(item.values)
            namespace, mode, chunk = item
            if mode in modes and (subgraphs or not namespace):
                root_values = mode == "values" and not namespace
                data = events_data(chunk) if mode == EVENTS else event_data(mode, chunk)
                _emit(context, event_name(mode, namespace), data, root_values=root_values)
            if cooperative:
                context.raise_if_cancelled()
    except BaseException:
        _stop_and_wait(runner)
        raise


def _leave_nothing_running(runner: GraphLoop) -> None:
    """The graph's stream has ended: its loop's thread ends at once, unless work the graph
    left behind still runs in its executor (a sync call an async node stopped waiting for).
    The run does not end before that work, so it never overlaps the thread's next run."""
    runner.join(SETTLE_SECONDS)
    _stop_and_wait(runner)


def _stop_and_wait(runner: GraphLoop) -> None:
    """Cancel the graph; no node of it runs once the run ends: on prefork the process exits
    after the run (once its status is written), elsewhere the run waits for the loop's
    thread, which ends when no node executes any more."""
    runner.stop()
    if not runner.is_alive():
        return
    if in_prefork_child():
        exit_after_run()
    else:
        runner.join()


async def _stream(
    graph: Pregel,
    payload: Any,
    config: dict[str, Any],
    modes: list[str],
    arguments: dict[str, Any],
) -> AsyncIterator[Chunk]:
    """The graph's chunks as (namespace, mode, chunk), subgraphs' included; with the `events`
    mode, astream_events' events other than the root graph's stream chunks as
    ((), "events", event), as the Agent Server streams them."""
    # `values` is always streamed: its last root chunk is the run's result, read for free
    # instead of a state read after the run; it is emitted only if the run asked for it.
    streamed = [mode for mode in modes if mode != EVENTS]
    if "values" not in streamed:
        streamed.append("values")
    if EVENTS not in modes:
        async for namespace, mode, chunk in graph.astream(
            payload, config, stream_mode=streamed, subgraphs=True, **arguments
        ):
            yield tuple(namespace), mode, chunk
        return
    async for event in graph.astream_events(
        payload, config, version="v2", stream_mode=streamed, subgraphs=True, **arguments
    ):
        if event["event"] == "on_chain_stream" and not event.get("parent_ids"):
            namespace, mode, chunk = event["data"]["chunk"]
            yield tuple(namespace), mode, chunk
        elif "langsmith:hidden" not in (event.get("tags") or ()):
            yield (), EVENTS, event


async def _state_values(graph: Pregel, config: dict[str, Any]) -> dict[str, Any]:
    """The thread's values as invoke() returns them, read from its checkpoint."""
    snapshot = await graph.aget_state(config)
    values = dict(snapshot.values)
    if snapshot.interrupts:
        values["__interrupt__"] = snapshot.interrupts
    return values


def _emit(context: RunContext, event: str, data: Any, *, root_values: bool) -> None:
    """One chunk to the run's stream. A chunk over the stream's size limit (a `values` of a
    long conversation) does not fail the graph: a `gap` takes its place, telling readers what
    was left out and where to read it whole. The root graph's last `values` is the run's
    result (join); any chunk's effect is in the thread's state (the checkpointer's)."""
    if root_values:
        read = f"GET /threads/{context.thread_id}/runs/{context.run_id}/join"
    else:
        read = f"GET /threads/{context.thread_id}/state"
    left_out: InvalidEventError | None
    try:
        left_out = context.emit_or_leave_out(event, data, read=read)
    except InvalidEventError as error:  # nested too deep for any reader: no stand-in either
        left_out = error
    if left_out is not None:
        logger.warning(
            "run %s: %s event left out of the stream: %s",
            context.run_id,
            event,
            left_out,
            extra={
                "run_id": context.run_id,
                "thread_id": context.thread_id,
                "action": "stream_event_left_out",
            },
        )


def _command(command: dict[str, Any]) -> Command:
    """A run's command as LangGraph's Command: an update given as [key, value] pairs (JSON has
    no tuples) becomes the tuples LangGraph expects."""
    update = command.get("update")
    if isinstance(update, list):
        command = {**command, "update": [tuple(pair) for pair in update]}
    return Command(**command)


def _run_config(
    context: RunContext, config: dict[str, Any] | None, fork_from: str | None = None
) -> dict[str, Any]:
    """The caller's config, with the run's thread (and, for a fork, the checkpoint it starts
    from) and, in every checkpoint's metadata, the run that wrote it."""
    config = dict(config or {})
    configurable = dict(config.get("configurable") or {})
    configurable["thread_id"] = context.thread_id
    if fork_from is not None:
        configurable.update(fork_configurable(context.thread_id, fork_from.lower()))
    config["configurable"] = configurable
    config["metadata"] = {
        **(config.get("metadata") or {}),
        "run_id": context.run_id,
        "thread_id": context.thread_id,
        "assistant_id": context.assistant_id,
    }
    return config
