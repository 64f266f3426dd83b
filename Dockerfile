# One image for every runqueue process: migrate, worker, flower (and the API, when it lands).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY runqueue ./runqueue
COPY workers ./workers
RUN pip install --no-cache-dir .
RUN useradd --create-home runqueue
USER runqueue
CMD ["runqueue", "worker"]
