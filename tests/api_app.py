"""The Celery app the HTTP API tests serve: the example assistants, plus the `agent` graph
the reference server runs too (tests/api_graphs.py)."""

from runqueue import create_app
from runqueue.langgraph import langgraph_assistant
from workers.assistants import register

app = create_app(name="api-tests")
register(app)


def _agent():  # noqa: ANN202 - LangGraph is imported at a process's first graph run
    from tests.api_graphs import agent

    return agent


langgraph_assistant(app, "agent", _agent)
