"""LangGraph graphs as runqueue assistants (the extra `runqueue[langgraph]`).

Imported only when used: `import runqueue` works without LangGraph installed."""

from __future__ import annotations

try:
    import langgraph.checkpoint.postgres  # noqa: F401
    import langgraph.checkpoint.sqlite  # noqa: F401
    import langgraph.graph  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without the extra
    from runqueue.errors import ExtraNotInstalledError

    raise ExtraNotInstalledError(
        f"LangGraph assistants need the langgraph extra: pip install 'runqueue[langgraph]' ({exc})"
    ) from exc

from runqueue.langgraph.assistant import GraphTask, langgraph_assistant
from runqueue.langgraph.checkpointer import RunCheckpointer, setup_checkpointer

__all__ = ["GraphTask", "RunCheckpointer", "langgraph_assistant", "setup_checkpointer"]
