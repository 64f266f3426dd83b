"""Apps whose workers serve disjoint assistants, as a fleet of GPU graph hosts and cheap tool
hosts would (tests/integration/test_routing.py): `tools` serves `tool`, `drafts` serves
`draft`, and `both` (the creating side) knows both."""

from __future__ import annotations

from typing import Any

from celery import Celery

from runqueue import RunContext, assistant, create_app


def tool(context: RunContext, n: int = 0) -> dict[str, Any]:
    return {"tool": n}


def draft(context: RunContext, n: int = 0) -> dict[str, Any]:
    return {"draft": n}


def _app(*functions: Any) -> Celery:
    app = create_app()
    for function in functions:
        assistant(app, function.__name__)(function)
    return app


tools = _app(tool)
drafts = _app(draft)
both = _app(tool, draft)
