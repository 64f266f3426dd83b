"""One attempt of a graph run: the graph streams in its own thread, and the run's own thread
turns its chunks into run-stream events and stays free to be stopped.

LangGraph runs a node in a thread of its own whenever it streams `messages`, `custom` or
subgraphs, so a SIGTERM (which Python delivers to the main thread) cannot stop the node, and
unwinding graph.stream() would wait for the node to finish. Here the main thread only waits
for chunks: a cancel's SIGTERM raises there at once, the run's status is written, and the
prefork child exits, the node with it. Where no SIGTERM comes (a threads or solo pool), the
cancel is cooperative: the graph is stopped between supersteps, and the attempt waits for it
to stop before the run ends, so the thread's next run never overlaps it.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from langgraph.pregel import Pregel
from langgraph.types import Command

from runqueue.errors import InvalidEventError
from runqueue.langgraph.checkpointer import Fence, RunCheckpointer
from runqueue.langgraph.events import event_data, event_name, jsonable, stream_modes
from runqueue.worker.run_context import RunContext
from runqueue.worker.sigterm import exit_after_run, in_prefork_child

logger = logging.getLogger(__name__)

WAIT_SECONDS = 0.1  # the run's thread wakes this often while the graph works


class _Finished:
    """The graph's stream ended: normally (error None) or by raising."""

    def __init__(self, error: BaseException | None = None):
        self.error = error


def run_graph(
    graph: Pregel,
    context: RunContext,
    input: Any = None,
    config: dict[str, Any] | None = None,
    stream_mode: str | list[str] | None = None,
    command: dict[str, Any] | None = None,
) -> Any:
    """Run the graph for one attempt: stream its chunks, return the thread's values (with
    `__interrupt__` when it stopped at an interrupt(), as LangGraph's invoke() returns
    them)."""
    fence = Fence(context.run_id, context.claim_token, context.write_timeout)
    checkpointer = RunCheckpointer(context.store, fence)
    graph = graph.copy(update={"checkpointer": checkpointer})
    run_config = _run_config(context, config)
    modes = stream_modes(stream_mode)
    # `values` is always streamed: its last root chunk is the run's result, read for free
    # instead of a get_state() after the run; it is emitted only if the run asked for it.
    streamed = [*modes, "values"] if "values" not in modes else modes
    payload = _command(command) if command else input
    chunks: queue.Queue[tuple[tuple[str, ...], str, Any] | _Finished] = queue.Queue()
    stop = threading.Event()

    def produce() -> None:
        try:
            for chunk in graph.stream(payload, run_config, stream_mode=streamed, subgraphs=True):
                chunks.put(chunk)
                if stop.is_set():
                    break  # closing the stream stops the graph before its next superstep
            chunks.put(_Finished())
        except BaseException as error:  # noqa: BLE001 - re-raised in the run's thread
            chunks.put(_Finished(error))

    producer = threading.Thread(target=produce, name=f"graph-{context.run_id}", daemon=True)
    producer.start()
    # In a prefork child a cancel arrives as SIGTERM (from the revoke, or from the heartbeat
    # when the revoke was lost); elsewhere the run asks the database between chunks.
    cooperative = not in_prefork_child()
    last_values: Any = None
    try:
        while True:
            try:
                item = chunks.get(timeout=WAIT_SECONDS)
            except queue.Empty:
                if cooperative:
                    context.raise_if_cancelled()
                continue
            if isinstance(item, _Finished):
                if item.error is not None:
                    raise item.error
                break
            namespace, mode, chunk = item
            if mode in modes:
                name, root_values = event_name(mode, namespace), mode == "values" and not namespace
                _emit(context, name, event_data(mode, chunk), root_values=root_values)
            if mode == "values" and not namespace:
                last_values = chunk
            if cooperative:
                context.raise_if_cancelled()
    except BaseException:
        stop.set()
        if producer.is_alive():
            if in_prefork_child():
                exit_after_run()  # the node dies with the process, once the status is written
            else:
                producer.join()  # nothing else will stop it: wait for the superstep to end
        raise
    if last_values is None:  # nothing ran (a resume with nothing left to do): read the state
        snapshot = graph.get_state(run_config)
        last_values = dict(snapshot.values)
        if snapshot.interrupts:
            last_values["__interrupt__"] = snapshot.interrupts
    return jsonable(last_values)


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


def _run_config(context: RunContext, config: dict[str, Any] | None) -> dict[str, Any]:
    """The caller's config, with the run's thread and, in every checkpoint's metadata, the
    run that wrote it."""
    config = dict(config or {})
    configurable = dict(config.get("configurable") or {})
    configurable["thread_id"] = context.thread_id
    config["configurable"] = configurable
    config["metadata"] = {
        **(config.get("metadata") or {}),
        "run_id": context.run_id,
        "thread_id": context.thread_id,
        "assistant_id": context.assistant_id,
    }
    return config
