"""runqueue: a durable, fleet-safe run queue for agent platforms, built on Celery and SQL."""

from runqueue.celery.app import create_app
from runqueue.errors import (
    ConflictError,
    DatabaseUnavailableError,
    ExtraNotInstalledError,
    FencedOffError,
    InvalidAssistantNameError,
    InvalidKwargsError,
    InvalidPayloadError,
    InvalidRunIdError,
    RunCancelledError,
    RunNotFoundError,
    RunQueueError,
    ThreadBusyError,
    ThreadExistsError,
    ThreadNotFoundError,
    UnknownAssistantError,
    UnsupportedStrategyError,
)
from runqueue.records import (
    AbortAction,
    DisconnectMode,
    MultitaskStrategy,
    PruneStrategy,
    RunEvent,
    RunRecord,
    RunStatus,
    StreamEvent,
    ThreadState,
    ThreadTtl,
)
from runqueue.registry import RunManager, RunOptions, RunRequest, SyncRunManager
from runqueue.settings import Settings
from runqueue.worker.retries import RetryPolicy
from runqueue.worker.run_context import RunContext
from runqueue.worker.task import RunTask, assistant

__all__ = [
    "AbortAction",
    "ConflictError",
    "DatabaseUnavailableError",
    "DisconnectMode",
    "ExtraNotInstalledError",
    "FencedOffError",
    "InvalidKwargsError",
    "InvalidPayloadError",
    "InvalidAssistantNameError",
    "InvalidRunIdError",
    "MultitaskStrategy",
    "PruneStrategy",
    "RunCancelledError",
    "RunContext",
    "RunEvent",
    "RunManager",
    "RunNotFoundError",
    "RunOptions",
    "RunQueueError",
    "ThreadBusyError",
    "ThreadExistsError",
    "ThreadNotFoundError",
    "RunRecord",
    "RunRequest",
    "RetryPolicy",
    "RunStatus",
    "RunTask",
    "Settings",
    "StreamEvent",
    "SyncRunManager",
    "ThreadState",
    "ThreadTtl",
    "UnknownAssistantError",
    "UnsupportedStrategyError",
    "assistant",
    "create_app",
    "langgraph_assistant",
]


def __getattr__(name: str):  # noqa: ANN202 - PEP 562
    """`runqueue.langgraph_assistant`, imported on first use: LangGraph is an extra
    (ExtraNotInstalledError, naming it, when it is missing)."""
    if name == "langgraph_assistant":
        from runqueue.langgraph import langgraph_assistant

        return langgraph_assistant
    raise AttributeError(f"module 'runqueue' has no attribute {name!r}")
