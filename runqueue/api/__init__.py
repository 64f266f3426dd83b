"""The HTTP API (FastAPI): the LangGraph runs API over the registry, for langgraph-sdk."""

from runqueue.api.server import create_api

__all__ = ["create_api"]
