"""LangGraph graphs as runqueue assistants (the extra `runqueue[langgraph]`).

Imported only when used: `import runqueue` works without LangGraph installed. Registering a
graph does not import LangGraph either (a worker starts as fast as without graphs); the
graph, its saver and LangGraph itself are imported at a process's first graph run, state
read, or run created with an `input` (checked against the graph's input schema)."""

from __future__ import annotations

import importlib.util
from typing import Any

from runqueue.errors import ExtraNotInstalledError


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # its parent package is missing
        return False


for _needed in ("langgraph.graph", "langgraph.checkpoint.postgres", "langgraph.checkpoint.sqlite"):
    if not _installed(_needed):  # tested in a subprocess (tests/unit/test_langgraph_adapter.py)
        raise ExtraNotInstalledError(
            "LangGraph assistants need the langgraph extra: pip install 'runqueue[langgraph]' "
            f"({_needed} is missing)"
        )

from runqueue.langgraph.assistant import GraphTask, langgraph_assistant  # noqa: E402

__all__ = ["GraphTask", "RunCheckpointer", "langgraph_assistant", "setup_checkpointer"]


def __getattr__(name: str) -> Any:  # PEP 562: the savers' module imports LangGraph
    if name in ("RunCheckpointer", "setup_checkpointer"):
        from runqueue.langgraph import checkpointer

        return getattr(checkpointer, name)
    raise AttributeError(f"module 'runqueue.langgraph' has no attribute {name!r}")
