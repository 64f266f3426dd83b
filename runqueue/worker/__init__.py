"""Everything that runs inside a Celery worker: the assistant task base, the signals that write
final statuses, maintenance (relay and reaper), durable writes and retry policies."""
