"""create_api(): the FastAPI application over a Celery app's registry, and the uvicorn options
`runqueue serve` runs it with.

The registry's async methods run their database calls in the event loop's default executor.
asyncio sizes that pool min(32, cores + 4): 6 threads on 2 cores, which would cap the whole
API at 6 concurrent database calls. The lifespan replaces it with RUNQUEUE_API_THREADS
threads, and the process's connection pool keeps as many connections open (see
docs/api.md, "Performance"). Streams and joins wait on Redis without a thread, through the
process's one shared reader (runqueue/stream/redis_multiplexer.py); how many each user may
hold open is bounded (open_streams.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from celery import Celery
from fastapi import FastAPI

from runqueue.api import (
    assistants,
    crons,
    runs,
    thread_changes,
    thread_state,
    thread_stream,
    threads,
)
from runqueue.api import store as store_routes
from runqueue.api.access_log import install_query_string_mask
from runqueue.api.context import ApiContext
from runqueue.api.errors import install_error_handlers
from runqueue.api.limits import RequestBodyLimits
from runqueue.api.open_streams import OpenStreams
from runqueue.api.protocol import PROTOCOL
from runqueue.api.users import ApiKeys
from runqueue.registry import RunManager
from runqueue.settings import Settings, trusted_proxies

logger = logging.getLogger(__name__)

BODY_OVERHEAD_BYTES = 64 * 1024  # a request may carry this much besides its JSON payloads


def create_api(app: Celery | None = None, settings: Settings | None = None) -> FastAPI:
    """The LangGraph runs API over this Celery app's registry (its assistants, database,
    broker and run stream)."""
    manager = RunManager(app, settings)
    settings = manager.sync.settings
    state = ApiContext(
        manager=manager,
        keys=ApiKeys(manager.sync.store),
        settings=settings,
        auth_required=settings.api_auth == "on",
        open_streams=OpenStreams(settings.api_max_streams_per_user),
    )

    @asynccontextmanager
    async def lifespan(_api: FastAPI) -> AsyncIterator[None]:
        executor = ThreadPoolExecutor(settings.api_threads, thread_name_prefix="runqueue-api")
        asyncio.get_running_loop().set_default_executor(executor)
        try:
            yield
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    api = FastAPI(
        title="runqueue",
        summary="The LangGraph runs API over runqueue: durable runs on a Celery fleet.",
        version="1",
        lifespan=lifespan,
    )
    api.state.runqueue = state
    install_error_handlers(api)
    api.add_middleware(
        RequestBodyLimits,
        max_bytes=2 * settings.max_payload_bytes + BODY_OVERHEAD_BYTES,
        timeout=settings.api_body_timeout_seconds,
    )
    if settings.log_payloads != "on":
        install_query_string_mask()
    api.include_router(assistants.router)
    api.include_router(threads.router)
    api.include_router(thread_state.router)
    api.include_router(thread_changes.router)
    api.include_router(crons.router)  # before runs: /runs/crons is not a run
    api.include_router(runs.router)
    api.include_router(thread_stream.router)
    api.include_router(store_routes.router)

    @api.get("/ok", tags=["meta"])
    async def ok() -> dict[str, bool]:
        """Liveness: the process answers (no key needed)."""
        return {"ok": True}

    return api


def api_from_environment() -> FastAPI:
    """The factory `runqueue serve` hands uvicorn: each uvicorn worker process builds its
    API from the RUNQUEUE_* environment (the CLI exports its options there first)."""
    from runqueue.registry.base import app_for

    settings = Settings.from_env()
    return create_api(app_for(settings), settings)


def server_options(settings: Settings) -> dict[str, object]:
    """The uvicorn options that bound what a client can hold: our h11 protocol (the request
    head's size and time: runqueue.api.protocol), no WebSockets (the API has none), and
    X-Forwarded-For believed only from RUNQUEUE_API_TRUSTED_PROXIES (uvicorn's default
    trusts 127.0.0.1, so that any local client could write any address in the access log)."""
    proxies = trusted_proxies(settings.api_trusted_proxies)
    return {
        "http": PROTOCOL,
        "ws": "none",
        "proxy_headers": bool(proxies),
        "forwarded_allow_ips": ",".join(proxies) if proxies else None,
    }
