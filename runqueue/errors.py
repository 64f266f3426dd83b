"""One exception family: catch RunQueueError and get a sentence a person can read."""

from __future__ import annotations


class RunQueueError(Exception):
    """Unexpected runqueue error."""

    http_status = 500  # what the HTTP API answers for it (runqueue.api maps by this alone)

    def __init__(self, message: str | None = None):
        super().__init__(message or self.__doc__)


class ConflictError(RunQueueError):
    """The thread already has an active run."""

    http_status = 409


class UnsupportedStrategyError(RunQueueError):
    """Unsupported multitask strategy."""

    http_status = 422


class UnknownAssistantError(RunQueueError):
    """No assistant is registered under that name."""

    http_status = 404


class InvalidPayloadError(RunQueueError):
    """The payload is not valid JSON for a run."""

    http_status = 422


class InvalidKwargsError(InvalidPayloadError):
    """The run's kwargs do not fit its assistant: an argument its function does not take or
    needs, or a graph input its input schema does not have."""

    def __init__(
        self,
        message: str | None = None,
        *,
        assistant_id: str | None = None,
        field: str | None = None,
    ):
        super().__init__(message)
        self.assistant_id = assistant_id  # the assistant the kwargs were for
        self.field = field  # the argument or input key at fault ("message", "input.topic")


class WebhookRefusedError(InvalidPayloadError):
    """The webhook URL is refused: not http(s), or its host is, or resolves to, an address
    no webhook may reach (RUNQUEUE_WEBHOOK_ALLOWED_HOSTS opens exceptions)."""


class WebhookUnresolvedError(WebhookRefusedError):
    """The webhook's host does not resolve (now: at send time it may again later)."""


class InvalidAssistantNameError(RunQueueError, ValueError):
    """An assistant's name that cannot name its broker queue (runqueue.celery.routing)."""


class InvalidRunIdError(RunQueueError):
    """The id is not a valid run or thread id."""

    http_status = 422


class AmbiguousRunIdError(InvalidRunIdError):
    """That run id prefix matches more than one run: give more characters."""


class RunNotFoundError(RunQueueError):
    """No run with that id."""

    http_status = 404


class InvalidStatusError(RunQueueError):
    """Unknown run status."""

    http_status = 422


class SettingsError(RunQueueError):
    """The runqueue settings are invalid."""


class ProjectConfigError(SettingsError):
    """The LangGraph project's configuration (langgraph.json) is invalid."""

    def __init__(self, message: str | None = None, *, path: str = "", entry: str = ""):
        super().__init__(message)
        self.path = path  # the langgraph.json at fault
        self.entry = entry  # the entry at fault ("graphs.agent", "env"), or "" for the file


class DatabaseUnavailableError(RunQueueError):
    """The database cannot be reached."""

    http_status = 503


class SchemaMissingError(RunQueueError):
    """The database has no runqueue schema, or an older one: run `runqueue migrate`."""

    http_status = 503


class StreamUnavailableError(RunQueueError):
    """The run stream's store (Redis) cannot be reached."""

    http_status = 503


class ThreadNotFoundError(RunQueueError):
    """No thread with that id."""

    http_status = 404


class CronNotFoundError(RunQueueError):
    """No cron with that id."""

    http_status = 404


class EmptyChangeError(InvalidPayloadError):
    """Nothing to change: the request gave no field."""

    http_status = 400  # as the reference server answers an empty PATCH of a cron


class CheckpointNotFoundError(RunQueueError):
    """No checkpoint with that id in the thread: a fork, a state read or a state update
    names an existing one."""

    http_status = 404


class ThreadExistsError(ConflictError):
    """A thread with that id already exists."""


class ThreadBusyError(ConflictError):
    """The thread has a run in flight: cancel it first."""


class NoThreadGraphError(RunQueueError):
    """The thread has no graph to update its state with: no run was made on it, and its
    metadata names no graph (graph_id or assistant_id)."""

    http_status = 400  # as the reference server answers


class InvalidStateUpdateError(InvalidPayloadError):
    """The state update does not fit the thread's graph: a node it does not have, or values
    its state cannot take."""


class AuthenticationError(RunQueueError):
    """A valid API key is required (header x-api-key)."""

    http_status = 401


class DuplicateApiKeyError(RunQueueError):
    """More than one x-api-key header: send exactly one."""

    http_status = 400


class ForeignHostError(RunQueueError):
    """With API keys off, the API answers only requests addressed to a loopback name
    (localhost, 127.x.x.x, [::1]): this one names another host."""

    http_status = 421


class CrossSiteRequestError(RunQueueError):
    """With API keys off, requests from another site's page are refused."""

    http_status = 403


class TooManyRequestsError(RunQueueError):
    """Too many requests of this user at once: try again later."""

    http_status = 429

    def __init__(self, message: str | None = None, *, retry_after: float = 1.0):
        super().__init__(message)
        self.retry_after = retry_after  # seconds; the HTTP API's Retry-After header


class InvalidEventError(InvalidPayloadError):
    """The stream event is not valid: a reserved or malformed name, data that is not JSON,
    or data over the size limit."""


class EventTooLargeError(InvalidEventError):
    """The stream event's data is over the size limit (RUNQUEUE_STREAM_MAX_EVENT_BYTES)."""

    # Defaults, so that it unpickles: a pool child's exception reaches the worker's main
    # process pickled, and unpickling calls the class with the message alone, then restores
    # the fields. Without them the run's error was named after the base class.
    def __init__(
        self, message: str | None = None, *, event: str = "", size: int = 0, limit: int = 0
    ):
        super().__init__(message)
        self.event = event  # the event's name
        self.size = size  # its data's JSON, in bytes
        self.limit = limit  # Settings.stream_max_event_bytes


class InvalidCursorError(RunQueueError):
    """Not a stream event id: resume after an id a stream gave."""

    http_status = 422


class BrokerUnavailableError(RunQueueError):
    """The message broker cannot be reached."""

    http_status = 503


class RunCancelledError(RunQueueError):
    """The run was cancelled."""


class FencedOffError(RunCancelledError):
    """This attempt no longer owns its run (cancelled, reaped, or taken over): the write was
    refused."""


class PoolHandOffError(RunQueueError):
    """The worker could not hand the run to a pool process: the run ends as `error`, and the
    worker goes on serving the others."""


class ExtraNotInstalledError(RunQueueError, ImportError):
    """An optional part of runqueue needs a pip extra that is not installed."""


class NotReadyError(RunQueueError):
    """The worker could not reach its database or broker in time."""

    http_status = 503


class DuplicateWorkerError(RunQueueError):
    """A live worker already has this node name: the fleet would see one where there are two."""

    http_status = 409


class InvalidNamespaceError(RunQueueError):
    """A store namespace is a list of non-empty labels (strings) without periods."""

    http_status = 422


class EmptyNamespaceError(RunQueueError):
    """Namespace cannot be empty."""

    http_status = 400  # as the reference server answers


class StoreKeyMissingError(RunQueueError):
    """Key is required."""

    http_status = 400  # as the reference server answers


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


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`1 run`, `2 runs` (`many`: an irregular plural): every message that counts says it so."""
    return f"{count} {noun if count == 1 else many or noun + 's'}"


class AssistantNotFoundError(UnknownAssistantError):
    """No assistant with that id."""


class AssistantExistsError(ConflictError):
    """An assistant with that id already exists."""


class DefaultAssistantError(ConflictError):
    """A registered graph's default assistant is read-only: create an assistant of the graph
    to configure it."""


class InvalidAssistantConfigError(InvalidPayloadError):
    """An assistant's config and context disagree: give config.configurable or context."""

    http_status = 400  # as the reference server answers
