"""The Celery app the HTTP API tests serve: the example assistants as a default install
serves them (no `journal` option), plus the `agent` and `chat` graphs the reference server runs too
(tests/api_graphs.py)."""

from runqueue import create_app
from runqueue.langgraph import langgraph_assistant
from workers.assistants import register


def register_broken(app) -> None:  # noqa: ANN001
    """RUNQUEUE_IMPORTS=tests.api_app:register_broken adds `broken`, a graph whose module
    fails to build: the server's unexpected 500 (tests/integration/test_api_limits.py).
    Defined before `app`, which calls it while this module is still being imported."""

    def build():  # noqa: ANN202
        raise RuntimeError("the graph's module failed to build")

    langgraph_assistant(app, "broken", build)


app = create_app(name="api-tests")
register(app)


def _agent():  # noqa: ANN202 - LangGraph is imported at a process's first graph run
    from tests.api_graphs import agent

    return agent


langgraph_assistant(app, "agent", _agent)


def _chat():  # noqa: ANN202 - the React hook's graph (tests/js/use_stream.mjs)
    from tests.api_graphs import chat

    return chat


langgraph_assistant(app, "chat", _chat)


def _options():  # noqa: ANN202 - the run-option tests' graph (tests/option_graphs.py)
    from tests.option_graphs import options

    return options


langgraph_assistant(app, "options", _options)


def _memory():  # noqa: ANN202 - the Store tests' graph (tests/store_graphs.py)
    from tests.store_graphs import memory

    return memory


langgraph_assistant(app, "memory", _memory)
