"""Example assistants. Each proves what it did through its own side effects: checkpoints in
the database, events in the run's stream and, when given a `journal` path, one JSON line per
step in that file."""

from __future__ import annotations

import functools
import time
from typing import Any

from celery import Celery

from runqueue import ExtraNotInstalledError, InvalidPayloadError, RunContext, assistant
from runqueue.journal import record

try:  # the example graph needs the langgraph extra; the plain assistants do not
    from runqueue.langgraph import langgraph_assistant
except ExtraNotInstalledError:
    langgraph_assistant = None


RESEARCH = (
    "An example graph: plan, research, review (asks a human when the input says `ask`), "
    "respond, streaming its reply token by token."
)

AGENT = (
    "An example agent: async nodes, a tool-calling chat model, two tools (one async), a review "
    "subgraph, and the user's name and tone from the run's context."
)


def research_graph() -> Any:
    """The example graph, built (and LangGraph imported) at a process's first graph run."""
    from workers.graphs import build_research_graph

    return build_research_graph()


def agent_graph() -> Any:
    """The example agent, built (and LangGraph imported) at a process's first graph run."""
    from workers.agent_graph import build_agent_graph

    return build_agent_graph()


def _journal(path: str | None, context: RunContext, event: str, **fields: Any) -> None:
    """Record what really executed (run, pid, event, time), when given a journal path."""
    if path:
        record(path, run_id=context.run_id, thread_id=context.thread_id, event=event, **fields)


def echo(context: RunContext, journal: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """Returns its kwargs, and counts how many runs of the thread came before."""
    _journal(journal, context, "start", values=context.values)
    previous = (context.values or {}).get("turns", 0)
    context.checkpoint({"turns": previous + 1, "last": kwargs})
    _journal(journal, context, "end")
    return {"echo": kwargs, "turn": previous + 1}


def steps(
    context: RunContext,
    steps: int = 5,
    delay: float = 0.2,
    journal: str | None = None,
    cooperative: bool = False,
) -> dict[str, Any]:
    """A long run: one checkpoint per step, appended to the thread's list of steps."""
    _journal(journal, context, "start", values=context.values)
    done = list((context.values or {}).get("steps", []))
    try:
        for step in range(steps):
            if cooperative:
                context.raise_if_cancelled()
            time.sleep(delay)
            done.append(f"{context.run_id}:{step}")
            context.checkpoint({"steps": done})
            context.emit("step", {"step": step + 1, "of": steps})
            _journal(journal, context, "step", step=step)
    finally:
        _journal(journal, context, "end")
    return {"steps": steps}


def fail(context: RunContext, message: str = "assistant failed") -> None:
    """Always raises, to show how errors are recorded."""
    raise RuntimeError(message)


def emitter(
    context: RunContext,
    count: int = 100,
    delay: float = 0.0,
    journal: str | None = None,
    stamp: bool = False,
    pad: int = 0,
) -> dict[str, Any]:
    """Emits `count` events (`tick` {"n": 1..count}, with the time of emit() if `stamp`, and
    `pad` characters of padding if asked), `delay` seconds apart: a run that streams.
    Journals each event it emitted, so a test can tell what the process tried."""
    _journal(journal, context, "start")
    try:
        for n in range(1, count + 1):
            if delay:
                time.sleep(delay)
            data: dict[str, Any] = {"n": n, "at": time.time()} if stamp else {"n": n}
            if pad:
                data["pad"] = "x" * pad
            context.emit("tick", data)
            _journal(journal, context, "tick", n=n)
    finally:
        _journal(journal, context, "end")
    return {"emitted": count}


def noop(context: RunContext, **kwargs: Any) -> None:
    """Does nothing: the cost of runqueue itself, for benchmarks."""
    return None


ASSISTANTS = {"echo": echo, "steps": steps, "fail": fail, "emitter": emitter, "noop": noop}


JOURNAL_REFUSED = frozenset({"journal"})
GRAPHS = (("research", research_graph, RESEARCH), ("weather_agent", agent_graph, AGENT))
# What the demo and the test suite register (RUNQUEUE_IMPORTS): the `journal` option included.
WITH_JOURNAL = "workers.assistants:register_with_journal"


def register(app: Celery) -> None:
    """The example assistants as a default install serves them (workers.app with no
    RUNQUEUE_IMPORTS, and docker-compose.yml): without the `journal` option, which would let
    any submitter write a file of their choosing as the worker's user. And the example
    graphs as `research` and `weather_agent` (when the langgraph extra is installed), whose
    `journal` state key is refused the same way."""
    for name, function in ASSISTANTS.items():
        # Refused when a run is created; the wrapper refuses it again should a run bypass that.
        assistant(app, name=name, refused_kwargs=JOURNAL_REFUSED)(_without_journal(function))
    if langgraph_assistant is not None:
        for name, graph, description in GRAPHS:
            langgraph_assistant(
                app, name, graph, description=description, refused_state_keys=JOURNAL_REFUSED
            )


def register_with_journal(app: Celery) -> None:
    """The example assistants with their `journal` option, which appends to any file the
    submitter names: for the demo and the tests (RUNQUEUE_IMPORTS=WITH_JOURNAL), never a
    deployment."""
    for name, function in ASSISTANTS.items():
        assistant(app, name=name)(function)
    if langgraph_assistant is not None:
        for name, graph, description in GRAPHS:
            langgraph_assistant(app, name, graph, description=description)


def _without_journal(function: Any) -> Any:
    @functools.wraps(function)
    def deployable(context: RunContext, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("journal") is not None:
            raise InvalidPayloadError("the journal option is for the demo and tests only")
        return function(context, *args, **kwargs)

    return deployable
