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
# Your own assistants: docker-compose.yml mounts ./assistants here, read-only, and
# RUNQUEUE_IMPORTS names their registrars (docs/operations.md, "Your own assistants"). An
# image FROM this one may COPY them here instead.
ENV ASSISTANTS_DIR=/app/assistants
ENV PYTHONPATH=${ASSISTANTS_DIR}
RUN mkdir -p ${ASSISTANTS_DIR}
RUN useradd --create-home runqueue
USER runqueue
CMD ["runqueue", "worker"]
