"""The deployable worker application: `celery -A workers.app worker` or `runqueue worker`."""
