"""A compiled LangGraph graph as a runqueue assistant.

    from runqueue.langgraph import langgraph_assistant
    langgraph_assistant(app, "agent", graph)        # a compiled graph, or a factory of one
                                                    # (sync or async nodes alike)

A run's kwargs are the LangGraph runs API's: `input`, `config`, `stream_mode`, `command`.
The graph runs with the run's thread as its `thread_id`, on runqueue's fenced checkpointer;
each stream chunk becomes one run-stream event; the run's result is the thread's values.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from celery import Celery

from runqueue import validation
from runqueue.celery.app import runtime_of
from runqueue.errors import InvalidKwargsError, InvalidPayloadError
from runqueue.langgraph.factories import (
    build_now,
    builds_per_run,
    is_compiled_graph,
    is_state_graph,
)
from runqueue.langgraph.run_options import RUN_OPTIONS, check_run_options
from runqueue.records import CheckpointRef, ThreadState
from runqueue.worker.run_context import RunContext
from runqueue.worker.task import RunTask

if TYPE_CHECKING:
    from langgraph.pregel import Pregel

logger = logging.getLogger(__name__)

GRAPH_KWARGS = ("input", "config", "stream_mode", "command", *RUN_OPTIONS)
COMMAND_KEYS = ("resume", "update", "goto")
_BUILDING = threading.Lock()  # a factory runs once per process, even under concurrent creates
_UNKNOWN: Any = object()


class GraphTask(RunTask):
    """The Celery task of a graph assistant: runs the graph, reads its threads' state."""

    takes_run_fields = True
    # State keys a run may not write (its input, a command's update): a key the graph has
    # that this deployment must not offer to submitters, e.g. a file path to append to
    # (`langgraph_assistant(app, name, graph, refused_state_keys=frozenset({"journal"}))`).
    refused_state_keys: frozenset[str] = frozenset()
    graph_source: Any = None  # set by langgraph_assistant(): a graph, or a factory of one
    # (runqueue.langgraph.factories: what a factory may be, and when it is called)
    _graph: Pregel | None = None
    _input_keys: frozenset[str] | None = _UNKNOWN  # read once: the check costs a create nothing
    _graph_here: Pregel | None = _UNKNOWN  # graph_here(): built, or known not to build here

    def graph(self) -> Pregel:
        """The compiled graph, built once per process (a factory taking the run's config is
        called here with an empty one: state reads and input checks need its structure)."""
        with _BUILDING:
            if self._graph is None:
                self._graph = build_now(self.name, self.graph_source)
            return self._graph

    def graph_for_runs(self) -> Any:
        """What each run builds its graph from: the factory itself when it is called for
        every run (it takes the run's config, is async, or gives a context manager: see
        factories.builds_per_run), else this process's graph."""
        if builds_per_run(self.graph_source):
            return self.graph_source
        return self.graph()

    def check_kwargs(self, thread_id: str, kwargs: dict[str, Any]) -> None:
        """A run's kwargs checked when it is created: InvalidPayloadError, nothing written."""
        unknown = sorted(kwargs.keys() - set(GRAPH_KWARGS))
        if unknown:
            raise InvalidPayloadError(
                f"graph assistant {self.name!r} takes {', '.join(GRAPH_KWARGS)}; "
                f"got {validation.shown(unknown[0])}"
            )
        from runqueue.langgraph.events import stream_modes

        stream_modes(kwargs.get("stream_mode"))
        check_run_options(kwargs)
        _check_config(thread_id, kwargs.get("config"))
        command = kwargs.get("command")
        if command is not None:
            _check_command(command)
            if kwargs.get("input") is not None:
                raise InvalidPayloadError("give a run input or a command, not both")
        self.refuse_state_keys(kwargs)
        self._check_breakpoints(kwargs)
        self._check_input(kwargs.get("input"))

    def check_fork_point(self, thread_id: str, kwargs: dict[str, Any]) -> None:
        """A fork (run option `checkpoint_id`) names a checkpoint its thread has:
        CheckpointNotFoundError otherwise, before anything is written (the attempt looks
        again when it starts: a rollback may delete it in between)."""
        fork_from = kwargs.get("checkpoint_id")
        if fork_from is not None:
            from runqueue.langgraph.forks import require_checkpoint

            require_checkpoint(runtime_of(self.app).store, thread_id, fork_from)

    def _check_breakpoints(self, kwargs: dict[str, Any]) -> None:
        """interrupt_before/after naming nodes the graph has (a misspelt breakpoint would
        never fire): checked when the graph can be built here, as the input is."""
        for field in ("interrupt_before", "interrupt_after"):
            nodes = kwargs.get(field)
            graph = self.graph_here() if isinstance(nodes, list | tuple) else None
            if graph is None:
                continue
            known = set(graph.nodes) - {"__start__"}
            unknown = [node for node in nodes if node not in known]
            if unknown:
                raise InvalidPayloadError(
                    f"{field}: graph assistant {self.name!r} has no node "
                    f"{validation.shown(unknown[0])} (its nodes: {', '.join(sorted(known))})"
                )

    def refuse_state_keys(self, kwargs: dict[str, Any]) -> None:
        """InvalidPayloadError for a state key this deployment turned off, in the input or in
        a command's update: checked when the run is created, and again by the worker (a run
        created by a process that registers the graph without the refusal)."""
        written = kwargs.get("input")
        keys = set(written) if isinstance(written, dict) else set()
        update = (kwargs.get("command") or {}).get("update")
        if isinstance(update, dict):
            keys |= update.keys()
        elif isinstance(update, list):
            keys |= {pair[0] for pair in update if isinstance(pair, list | tuple) and pair}
        refused = sorted(self.refused_state_keys & keys)
        if refused:
            raise InvalidPayloadError(
                f"graph assistant {self.name!r} does not accept the state key "
                f"{validation.shown(refused[0])} here: this deployment turned it off"
            )

    def _check_input(self, value: Any) -> None:
        """A run's input against the graph's input schema (InvalidKwargsError): an object
        whose keys are all the schema's. None is allowed: the graph goes on from the
        thread's checkpoint (or takes a command). Unchecked when the graph has no state
        schema (not a StateGraph) or cannot be built in this process."""
        if value is None:
            return
        keys = self.input_keys()
        if keys is None:
            return
        shown = ", ".join(sorted(keys))
        if not isinstance(value, dict):
            raise InvalidKwargsError(
                f"input of graph assistant {self.name!r} must be an object of its state's "
                f"keys ({shown}), not {type(value).__name__}",
                assistant_id=self.name,
                field="input",
            )
        unknown = sorted(value.keys() - keys)
        if unknown:
            key = unknown[0]  # as typed, unless too long or odd to print on one line
            named = key if key.isprintable() and len(key) <= 60 else validation.shown(key)
            raise InvalidKwargsError(
                f"input.{named}: graph assistant {self.name!r} has no such key in its "
                f"input schema ({shown})",
                assistant_id=self.name,
                field=f"input.{unknown[0]}",
            )

    def input_keys(self) -> frozenset[str] | None:
        """The channels a run's input may write (the StateGraph's input schema), or None if
        not known here. Read from the graph's builder, not its JSON schema: pydantic cannot
        make one of a typing.TypedDict state before Python 3.12. Read once per process, a
        graph that cannot be built here included (one warning, no factory call per create).
        A state that is not an object (a list, `Annotated[list, add]`: LangGraph's
        `__root__` channel) takes any input: unchecked."""
        if self._input_keys is _UNKNOWN:
            self._input_keys = self._read_input_keys()
        return self._input_keys

    def _read_input_keys(self) -> frozenset[str] | None:
        graph = self.graph_here()
        builder = getattr(graph, "builder", None)
        schemas = getattr(builder, "schemas", None)
        schema = getattr(builder, "input_schema", None)
        if not isinstance(schemas, dict) or schema not in schemas:
            return None
        keys = frozenset(schemas[schema])
        return None if keys == {"__root__"} else keys

    def graph_here(self) -> Pregel | None:
        """The graph if it can be built in this process, else None: what a create checks
        against (input, breakpoints). Tried once per process (one warning, no factory call
        per create)."""
        if self._graph_here is _UNKNOWN:
            try:
                self._graph_here = self.graph()
            except Exception as error:  # noqa: BLE001 - the worker reports it when the run executes
                logger.warning(
                    "assistant %s: its graph cannot be built in this process (%s); runs' input "
                    "and breakpoints are not checked here",
                    self.name,
                    type(error).__name__,
                    extra={"assistant_id": self.name, "action": "input_unchecked"},
                )
                self._graph_here = None
        return self._graph_here

    def thread_state(
        self,
        thread_id: str,
        *,
        checkpoint: CheckpointRef | None = None,
        subgraphs: bool = False,
    ) -> ThreadState:
        """The thread's latest kept checkpoint, or the one named, as LangGraph's get_state()
        reads it (runqueue.langgraph.thread_history)."""
        from runqueue.langgraph.thread_history import graph_state

        store = runtime_of(self.app).store
        return graph_state(
            self.graph(), store, self.name, thread_id, checkpoint=checkpoint, subgraphs=subgraphs
        )

    def thread_history(
        self,
        thread_id: str,
        *,
        limit: int = 10,
        before: str | None = None,
        metadata: dict[str, Any] | None = None,
        checkpoint: CheckpointRef | None = None,
    ) -> list[ThreadState]:
        """The thread's checkpoints newest first, as LangGraph's get_state_history() lists
        them."""
        from runqueue.langgraph.thread_history import graph_history

        store = runtime_of(self.app).store
        return graph_history(
            self.graph(),
            store,
            self.name,
            thread_id,
            limit=limit,
            before=before,
            metadata=metadata,
            checkpoint=checkpoint,
        )

    def update_thread_state(
        self,
        thread_id: str,
        values: Any,
        *,
        as_node: str | None = None,
        checkpoint: CheckpointRef | None = None,
        user_id: str | None = None,
    ) -> CheckpointRef:
        """A new checkpoint as LangGraph's update_state() makes it, written under the thread
        lock while no run of the thread is in flight (runqueue.langgraph.state_update)."""
        from runqueue.langgraph.state_update import update_graph_state

        if isinstance(values, dict):
            self.refuse_state_keys({"input": values})
        return update_graph_state(
            self.graph(),
            runtime_of(self.app).store,
            self.name,
            thread_id,
            values,
            as_node=as_node,
            checkpoint=checkpoint,
            user_id=user_id,
        )


def _check_config(thread_id: str, config: Any) -> None:
    if config is None:
        return
    if not isinstance(config, dict):
        raise InvalidPayloadError("config must be a JSON object")
    for key in ("configurable", "metadata"):
        if config.get(key) is not None and not isinstance(config[key], dict):
            raise InvalidPayloadError(f"config.{key} must be a JSON object")
    configurable = config.get("configurable") or {}
    given = configurable.get("thread_id")
    if given is not None and given != thread_id:
        raise InvalidPayloadError(
            f"config.configurable.thread_id is {given!r}, but the run's thread is {thread_id!r}"
        )
    reserved = validation.run_set_keys(configurable)
    if reserved:
        raise InvalidPayloadError(
            f"config.configurable.{reserved[0]} is set by the graph run itself, not by a caller"
        )


def _check_command(command: Any) -> None:
    if not isinstance(command, dict) or not command.keys() <= set(COMMAND_KEYS):
        raise InvalidPayloadError(
            f"command must be an object with any of {', '.join(COMMAND_KEYS)}"
        )
    if all(value is None for value in command.values()):
        raise InvalidPayloadError(
            f"command needs one of {', '.join(COMMAND_KEYS)} with a value (resume: the answer "
            "to the pending interrupt())"
        )
    goto = command.get("goto")
    if goto is not None and not (
        isinstance(goto, str) or (isinstance(goto, list) and all(isinstance(g, str) for g in goto))
    ):
        raise InvalidPayloadError("command.goto must be a node name or a list of them")
    update = command.get("update")
    pairs = isinstance(update, list) and all(
        isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str) for pair in update
    )
    if update is not None and not (isinstance(update, dict) or pairs):
        raise InvalidPayloadError("command.update must be an object (or a list of [key, value])")


def langgraph_assistant(
    app: Celery,
    name: str,
    graph: Pregel | Any | Callable[..., Any],
    *,
    description: str | None = None,
    **task_options: Any,
) -> GraphTask:
    """Register a graph as the assistant `name`: compiled, a StateGraph, or a factory (sync or
    async; with no parameter it is called once per process, with one it gets each run's
    config, see runqueue.langgraph.factories). Its nodes may be sync, `async def`, or both.
    `description` (default: the factory's docstring) is what the assistants listings show."""
    compiled = is_compiled_graph(graph) or is_state_graph(graph)
    if not compiled and not callable(graph):
        raise TypeError(
            "graph must be a compiled LangGraph graph, a StateGraph, or a function returning one"
        )

    # A function stored on the task class would become a method: keep it static.
    source = graph if compiled else staticmethod(graph)
    task_options.setdefault("shared", False)  # on this app alone, as assistant()
    if description is None and not compiled:
        description = graph.__doc__
    # The task's docstring is the assistant's description (the listings show its first
    # line); Celery would give it _run's, the same for every graph.
    task_options["__doc__"] = description
    name = validation.assistant_name(name)
    return app.task(base=GraphTask, name=name, bind=True, graph_source=source, **task_options)(_run)


def _run(self: GraphTask, context: RunContext, /, **kwargs: Any) -> Any:
    """The body of every graph assistant's task: one function whatever the graph, so that
    registering it on several apps registers the same callable. (`context` is positional
    only: a run's kwargs have a `context` of their own, LangGraph's runtime context.)"""
    from runqueue.langgraph.execution import run_graph
    from runqueue.langgraph.item_store import store_for_run

    self.refuse_state_keys(kwargs)
    item_store = store_for_run(runtime_of(self.app), context.run_id)
    return run_graph(self.name, self.graph_for_runs(), context, item_store=item_store, **kwargs)
