"""runqueue: a durable, fleet-safe run queue for agent platforms, built on Celery and SQL."""

from runqueue.app import create_app
from runqueue.errors import (
    ConflictError,
    DatabaseUnavailableError,
    InvalidPayloadError,
    InvalidRunIdError,
    RunCancelledError,
    RunNotFoundError,
    RunQueueError,
    UnknownAssistantError,
    UnsupportedStrategyError,
)
from runqueue.records import (
    AbortAction,
    DisconnectMode,
    MultitaskStrategy,
    RunEvent,
    RunRecord,
    RunStatus,
    StreamEvent,
)
from runqueue.registry import RunManager, RunOptions, SyncRunManager
from runqueue.settings import Settings
from runqueue.worker.execution import RunContext, RunTask, assistant
from runqueue.worker.retries import RetryPolicy

__all__ = [
    "AbortAction",
    "ConflictError",
    "DatabaseUnavailableError",
    "DisconnectMode",
    "InvalidPayloadError",
    "InvalidRunIdError",
    "MultitaskStrategy",
    "RunCancelledError",
    "RunContext",
    "RunEvent",
    "RunManager",
    "RunNotFoundError",
    "RunOptions",
    "RunQueueError",
    "RunRecord",
    "RetryPolicy",
    "RunStatus",
    "RunTask",
    "Settings",
    "StreamEvent",
    "SyncRunManager",
    "UnknownAssistantError",
    "UnsupportedStrategyError",
    "assistant",
    "create_app",
]
