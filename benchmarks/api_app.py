"""The Celery app of the HTTP API benchmark (benchmarks/api.py), served by `runqueue serve`
and run by its worker: the `noop` graph it measures and the `agent` graph of the API tests,
the two graphs the LangGraph reference server is given too."""

from runqueue import create_app
from runqueue.langgraph import langgraph_assistant

app = create_app(name="bench-api")


def _noop():  # noqa: ANN202 - LangGraph is imported at a process's first graph run
    from benchmarks.api_noop import noop

    return noop


def _agent():  # noqa: ANN202
    from tests.api_graphs import agent

    return agent


langgraph_assistant(app, "noop", _noop)
langgraph_assistant(app, "agent", _agent)
