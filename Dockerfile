# One image for every runqueue process: migrate, worker, flower (and the API, when it lands).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY runqueue ./runqueue
COPY workers ./workers
# The deployed app (workers/) runs the example LangGraph graph too: the langgraph extra.
RUN pip install --no-cache-dir ".[langgraph]"
RUN useradd --create-home runqueue
USER runqueue
CMD ["runqueue", "worker"]
