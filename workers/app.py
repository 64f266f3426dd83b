"""The fleet's Celery app, configured from RUNQUEUE_* variables."""

from runqueue import create_app
from workers.assistants import register

app = create_app(name="workers")
register(app)
