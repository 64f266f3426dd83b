"""The HTTP API (FastAPI): the LangGraph runs API over the registry."""
