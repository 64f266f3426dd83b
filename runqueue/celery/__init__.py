"""Celery's side of runqueue, shared by every process (API, CLI, worker): the app factory,
publishing runs to the broker, the task events runqueue sends itself, and the two kombu
broker transports it patches. What runs only inside a worker is runqueue.worker."""
