"""The fleet's Celery app, configured from RUNQUEUE_* variables."""

from runqueue import create_app

app = create_app(name="workers", include=["workers.assistants"])
