"""What a graph assistant was registered with, made into a compiled graph: a compiled graph, a
`StateGraph` (compiled here), or a factory as the LangGraph Agent Server accepts it.

A factory may be a plain or an `async def` function, and may return a graph, a `StateGraph`,
or a context manager (sync or async) yielding one. One that takes no argument is called once
per process, as before. One that takes an argument gets the run's config and is called for
every run, as the Agent Server calls it, so a graph can depend on the run's configurable (a
model name, a tool set); state reads and input checks call it with an empty config.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from runqueue.errors import RunQueueError

if TYPE_CHECKING:
    from langgraph.pregel import Pregel


class GraphSourceError(RunQueueError, TypeError):
    """A graph assistant's factory did not give a LangGraph graph."""


def is_compiled_graph(graph: Any) -> bool:
    """A compiled graph, told apart from a factory without importing LangGraph."""
    return hasattr(graph, "get_state") and hasattr(graph, "astream")


def is_state_graph(graph: Any) -> bool:
    """An uncompiled StateGraph (it has compile() and no stream)."""
    return hasattr(graph, "compile") and hasattr(graph, "add_node") and not is_compiled_graph(graph)


def takes_config(factory: Callable[..., Any]) -> bool:
    """True for a factory with a parameter (the run's config): it is built for each run."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin or a C callable: called without arguments
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(p.kind in positional and p.default is p.empty for p in parameters)


def _call(factory: Callable[..., Any], config: dict[str, Any]) -> Any:
    return factory(config) if takes_config(factory) else factory()


def _checked(name: str, graph: Any) -> Pregel:
    """A compiled graph named after its assistant when LangGraph gave it no name of its own
    (as the Agent Server names it: the name shows in events and traces)."""
    from langgraph.pregel import Pregel

    if is_state_graph(graph):
        graph = graph.compile()
    if not isinstance(graph, Pregel):
        raise GraphSourceError(
            f"assistant {name!r}: the factory gave {type(graph).__name__}, not a LangGraph graph"
        )
    if graph.name == "LangGraph":
        graph = graph.copy(update={"name": name})
    return graph


async def _resolved(name: str, value: Any, stack: contextlib.AsyncExitStack) -> Pregel:
    """A factory's result made a graph: awaited, and a context manager entered on `stack`."""
    if inspect.isawaitable(value):
        value = await value
    if hasattr(value, "__aenter__"):
        value = await stack.enter_async_context(value)
    elif hasattr(value, "__enter__") and not is_compiled_graph(value):
        value = stack.enter_context(value)
    return _checked(name, value)


async def build_for_run(
    name: str, source: Any, config: dict[str, Any], stack: contextlib.AsyncExitStack
) -> Pregel:
    """The graph for one run, on the run's event loop: a context manager a factory returned
    is entered on `stack` and left when the run's stream ends."""
    if is_compiled_graph(source) or is_state_graph(source):
        return _checked(name, source)
    return await _resolved(name, _call(source, config), stack)


def builds_per_run(source: Any) -> bool:
    """True for a factory called for every run: one that takes the run's config, an
    `async def` one (its graph may hold what belongs to the run's event loop), and one that
    gives a context manager (what it holds is open only while a run uses the graph), as the
    Agent Server calls them. A plain function returning a graph is called once per process."""
    if is_compiled_graph(source) or is_state_graph(source) or not callable(source):
        return False
    if takes_config(source) or inspect.iscoroutinefunction(source):
        return True
    wrapped = getattr(source, "__wrapped__", None)  # @contextmanager / @asynccontextmanager
    return wrapped is not None and (
        inspect.isgeneratorfunction(wrapped) or inspect.isasyncgenfunction(wrapped)
    )


def build_now(name: str, source: Any) -> Pregel:
    """The graph built outside a run (state reads, input checks), with an empty config. An
    async factory is awaited on a loop of its own (in a thread of its own if this thread
    runs a loop already); a context manager is entered and left at once: the graph's
    structure is all that is read."""
    if is_compiled_graph(source) or is_state_graph(source):
        return _checked(name, source)
    value = _call(source, {"configurable": {}})
    if not inspect.isawaitable(value) and not hasattr(value, "__aenter__"):
        if hasattr(value, "__enter__") and not is_compiled_graph(value):
            with value as graph:
                return _checked(name, graph)
        return _checked(name, value)

    async def resolve() -> Pregel:
        async with contextlib.AsyncExitStack() as stack:
            return await _resolved(name, value, stack)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(resolve())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, resolve()).result()
