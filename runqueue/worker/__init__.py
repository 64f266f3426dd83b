"""Everything that runs inside a Celery worker: the assistant task base, the signals that write
final statuses, maintenance (relay and reaper), durable writes and retry policies.

The status writers are Celery signal handlers, connected when this package is imported; `import
runqueue` imports it (RunTask and `assistant` live here), so every runqueue app has them.
"""

from runqueue.worker import signals  # noqa: F401
