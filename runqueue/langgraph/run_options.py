"""A graph run's LangGraph options besides input, config, stream_mode and command.

(A first cut: the options' checks and their full meaning come with the API's run options.)"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

RUN_OPTIONS = ("context", "interrupt_before", "interrupt_after", "stream_subgraphs", "durability")


def check_run_options(kwargs: Mapping[str, Any]) -> None:
    """Nothing to check yet."""


def astream_arguments(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for Pregel.astream() from a run's kwargs (only those given)."""
    names = ("context", "interrupt_before", "interrupt_after", "durability")
    return {name: kwargs[name] for name in names if kwargs.get(name) is not None}


def filtered_context(graph: Any, context: dict[str, Any] | None) -> dict[str, Any] | None:
    """The run's context as given."""
    return context
