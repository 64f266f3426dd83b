"""The fleet's Celery app, configured from RUNQUEUE_* variables. It serves the assistants that
RUNQUEUE_IMPORTS names; with none named, the example assistants as a deployment may serve
them (workers.assistants.register: no test-only options)."""

from runqueue import create_app
from workers.assistants import register

app = create_app(name="workers")
if not app.runqueue.settings.imports:
    register(app)
