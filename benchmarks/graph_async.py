"""The async half of benchmarks/graph.py: the example research graph's async twin (the same
state, the same four nodes doing the same work, each an `async def`, the reply streamed with
the fake chat model's `astream`), registered in the benchmark's worker as `research_async`,
and the same graph's `astream` in this process on one event loop with the official async
saver (AsyncPostgresSaver; AsyncSqliteSaver on the embedded backend)."""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import AsyncExitStack
from typing import Any

from celery import Celery
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.pregel import Pregel
from sqlalchemy.engine import make_url

from runqueue.langgraph import langgraph_assistant
from tests.support import Backend
from workers import graphs

ASYNC_ASSISTANT = "research_async"
# Settings.imports entry that registers it in the benchmark's worker.
REGISTER = "benchmarks.graph_async:register"


async def plan(state: graphs.ResearchState, config: RunnableConfig) -> dict[str, Any]:
    return graphs.plan(state, config)


async def research(state: graphs.ResearchState, config: RunnableConfig) -> dict[str, Any]:
    return graphs.research(state, config)  # no pause in the benchmark: no tick, no sleep


async def review(state: graphs.ResearchState, config: RunnableConfig) -> dict[str, Any]:
    return graphs.review(state, config)


async def respond(state: graphs.ResearchState, config: RunnableConfig) -> dict[str, Any]:
    topic = state.get("topic") or "queues"
    text = f"Here is a short note on {topic}: durable, fenced and streamed."
    model = GenericFakeChatModel(messages=iter([AIMessage(content=text)]))
    reply = None
    async for chunk in model.astream(state.get("messages") or []):
        reply = chunk if reply is None else reply + chunk
    message = AIMessage(content=reply.content, id=reply.id)
    return {"log": [f"respond@{config.get('metadata', {}).get('run_id', '-')}"],
            "messages": [message]}  # fmt: skip


def build_async_research_graph() -> Pregel:
    """The research graph's shape, with async nodes; compiled without a checkpointer."""
    return graphs.build_research_graph((plan, research, review, respond))


def register(app: Celery) -> None:
    """Settings.imports hook: the async twin, beside the example assistants."""
    langgraph_assistant(app, ASYNC_ASSISTANT, build_async_research_graph)


class AsyncInProcess:
    """The async graph run in this process, as an application would: one event loop, the
    official async saver on the backend's database, `astream` to the end per run."""

    def __init__(self, backend: Backend, graph_input: dict[str, Any]):
        self.graph_input = graph_input
        self.loop = asyncio.new_event_loop()
        self.stack = AsyncExitStack()
        saver = self.loop.run_until_complete(self._open(backend))
        self.graph = build_async_research_graph().copy(update={"checkpointer": saver})

    async def _open(self, backend: Backend) -> BaseCheckpointSaver:
        url = make_url(backend.settings.database_url)
        if url.get_backend_name() == "postgresql":
            libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
            saver = await self.stack.enter_async_context(AsyncPostgresSaver.from_conn_string(libpq))
        else:
            saver = await self.stack.enter_async_context(
                AsyncSqliteSaver.from_conn_string(url.database)
            )
        await saver.setup()
        return saver

    def times(self, samples: int) -> list[float]:
        return self.loop.run_until_complete(self._times(samples))

    async def _times(self, samples: int) -> list[float]:
        times = []
        for _ in range(samples):
            config = {"configurable": {"thread_id": f"bench-graph-{uuid.uuid4().hex[:10]}"}}
            started = time.perf_counter()
            async for _chunk in self.graph.astream(self.graph_input, config):
                pass
            times.append(time.perf_counter() - started)
        return times

    def close(self) -> None:
        self.loop.run_until_complete(self.stack.aclose())
        self.loop.close()
