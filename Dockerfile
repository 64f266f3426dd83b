# One image for every runqueue process: migrate, worker, Flower and the HTTP API.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY runqueue ./runqueue
COPY workers ./workers
# Pinned versions (constraints.txt). The deployed app runs the example LangGraph graph too:
# the langgraph extra.
RUN pip install --no-cache-dir -c constraints.txt ".[langgraph]"
RUN useradd --create-home runqueue
USER runqueue
CMD ["runqueue", "worker"]
