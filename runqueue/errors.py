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


class StreamUnavailableError(RunQueueError):
    """The run stream's store (Redis) cannot be reached."""


class InvalidEventError(InvalidPayloadError):
    """The stream event is not valid: a reserved or malformed name, data that is not JSON,
    or data over the size limit."""


class InvalidCursorError(RunQueueError):
    """Not a stream event id: resume after an id a stream gave."""


class BrokerUnavailableError(RunQueueError):
    """The message broker cannot be reached."""


class RunCancelledError(RunQueueError):
    """The run was cancelled."""


class FencedOffError(RunCancelledError):
    """This attempt no longer owns its run (cancelled, reaped, or taken over): the write was
    refused."""


class ExtraNotInstalledError(RunQueueError, ImportError):
    """An optional part of runqueue needs a pip extra that is not installed."""


def first_line(error: BaseException | str) -> str:
    """The first line of an error's text, or its type's name if it has none: one-line messages
    (the CLI, "database unavailable: ...") quote errors this way."""
    text = str(error).strip()
    if text:
        return text.splitlines()[0]
    return type(error).__name__ if isinstance(error, BaseException) else ""


def describe(error: BaseException) -> str:
    """'Type: text' (or the type alone), as a run's `error` and its history record it."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
