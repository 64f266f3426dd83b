"""One exception family: catch RunQueueError and get a sentence a person can read."""

from __future__ import annotations


class RunQueueError(Exception):
    """Unexpected runqueue error."""

    def __init__(self, message: str | None = None):
        super().__init__(message or self.__doc__)


class ConflictError(RunQueueError):
    """The thread already has an active run."""


class UnsupportedStrategyError(RunQueueError):
    """Unsupported multitask strategy."""


class UnknownAssistantError(RunQueueError):
    """No assistant is registered under that name."""


class InvalidPayloadError(RunQueueError):
    """The payload is not valid JSON for a run."""


class InvalidRunIdError(RunQueueError):
    """The id is not a valid run or thread id."""


class RunNotFoundError(RunQueueError):
    """No run with that id."""


class InvalidStatusError(RunQueueError):
    """Unknown run status."""


class SettingsError(RunQueueError):
    """The runqueue settings are invalid."""


class DatabaseUnavailableError(RunQueueError):
    """The database cannot be reached."""


class BrokerUnavailableError(RunQueueError):
    """The message broker cannot be reached."""


class RunCancelledError(RunQueueError):
    """The run was cancelled."""
