"""Everything that speaks SQL: engines, transactions, the statements that change runs, reads,
the tables and their migrations. Knows nothing of Celery, the worker or the terminal.

The names below are the store's public face; the rest of runqueue imports them from here,
never from the modules inside."""

from runqueue.store.claims import ClaimOutcome
from runqueue.store.cron_schedules import check_schedule, check_timezone
from runqueue.store.crons import CRON_SORT_KEYS, NewCron
from runqueue.store.database import migrate, require_current_schema, require_database
from runqueue.store.decisions import RunStore
from runqueue.store.effects import Effects, NewRun, RunEnding
from runqueue.store.graph_writes import GraphWrite, LentConnection
from runqueue.store.queries import RunQueries
from runqueue.store.stream_rows import StreamRefusal, StreamRows
from runqueue.store.thread_retention import Pruned, PruneOutcome
from runqueue.store.transactions import INFLIGHT, PENDING
from runqueue.store.webhook_deliveries import ClaimedDelivery, WebhookDeliveries

__all__ = [
    "INFLIGHT",
    "PENDING",
    "CRON_SORT_KEYS",
    "ClaimOutcome",
    "ClaimedDelivery",
    "Effects",
    "GraphWrite",
    "LentConnection",
    "NewCron",
    "NewRun",
    "PruneOutcome",
    "Pruned",
    "RunEnding",
    "RunQueries",
    "RunStore",
    "StreamRefusal",
    "StreamRows",
    "check_schedule",
    "check_timezone",
    "WebhookDeliveries",
    "migrate",
    "require_current_schema",
    "require_database",
]
