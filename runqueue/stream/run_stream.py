"""RunStream: the run stream as the rest of runqueue uses it. It does the bookkeeping (names,
JSON, sizes, runqueue's own events); the transport chosen from the URL does only the I/O."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

from runqueue.errors import EventTooLargeError, SettingsError
from runqueue.records import RunRecord, RunStatus, StreamEvent
from runqueue.settings import Settings, redact_url
from runqueue.stream import events, reader
from runqueue.stream.transport import Appended, StreamTransport

logger = logging.getLogger(__name__)


class RunStream:
    """Every run's stream of events: written by its attempt (fenced by the claim token) and by
    runqueue at the run's end, read by any number of followers."""

    def __init__(self, transport: StreamTransport, *, max_event_bytes: int):
        self.transport = transport
        self.max_event_bytes = max_event_bytes

    # -- writing ------------------------------------------------------------------------------

    def open(self, run_id: str, token: str, *, thread_id: str, attempt: int) -> Appended:
        """An attempt starts: it owns the stream from now on, and says so with `metadata`.
        Refused if the run ended or a later attempt opened the stream."""
        event, data = events.metadata(run_id, thread_id, attempt)
        return self.transport.open(run_id, token, attempt, event, data)

    def touch(self, run_id: str) -> None:
        """The run is still running: keep its stream (see StreamTransport.touch)."""
        self.transport.touch(run_id)

    def encode(self, event: str, data: object) -> str:
        """An assistant's event checked: its data as JSON text (InvalidEventError for a
        reserved or malformed name, data that is not JSON, or data over the size limit)."""
        return events.encode_emitted(event, data, self.max_event_bytes)

    def left_out(self, too_large: EventTooLargeError, read: str) -> tuple[str, str]:
        """The `gap` that stands for an event over the size limit (see events.left_out)."""
        return events.left_out(too_large, read)

    def append(self, run_id: str, token: str, entries: list[tuple[str, str]]) -> Appended:
        """Encoded events of an attempt, if it still owns the stream and it has not ended."""
        return self.transport.append(run_id, token, entries)

    def reopen(self, run_id: str, token: str, attempt: int, after_seq: int) -> bool:
        """Recreate a stream its store lost under a running run (see StreamTransport)."""
        reopened = self.transport.reopen(run_id, token, attempt, after_seq)
        if reopened:
            logger.warning(
                "the stream of run %s was lost (a Redis restart?); reopened after event %d",
                run_id,
                after_seq,
                extra={"run_id": run_id, "action": "stream_reopened"},
            )
        return reopened

    def end(
        self,
        run_id: str,
        status: RunStatus,
        *,
        error: str | None = None,
        error_type: str | None = None,
    ) -> bool:
        """The run reached `status`: write `error` if it failed, then `end`, and close the
        stream to every later writer. False if it had already ended."""
        sealed = self.transport.seal(
            run_id, status.value, events.ending(status, error, error_type), create=True
        )
        logger.debug(
            "stream of run %s %s (%s)",
            run_id,
            "ended" if sealed else "had already ended",
            status.value,
            extra={"run_id": run_id, "action": "stream_end"},
        )
        return sealed

    def delete(self, run_id: str) -> None:
        self.transport.delete(run_id)

    def purge_expired(self) -> int:
        return self.transport.purge_expired()

    # -- reading ------------------------------------------------------------------------------

    def follow(
        self, run_id: str, after: str | int | None, run_of: reader.RunOf
    ) -> Iterator[StreamEvent]:
        return reader.follow(self.transport, run_id, events.cursor(after), run_of)

    def afollow(
        self, run_id: str, after: str | int | None, run_of: reader.RunOf
    ) -> AsyncIterator[StreamEvent]:
        return reader.afollow(self.transport, run_id, events.cursor(after), run_of)

    def wait_for_end(self, run_id: str, run_of: reader.RunOf, timeout: float) -> RunRecord:
        return reader.wait_for_end(self.transport, run_id, run_of, timeout)

    async def await_end(self, run_id: str, run_of: reader.RunOf, timeout: float) -> RunRecord:
        return await reader.await_end(self.transport, run_id, run_of, timeout)

    def close(self) -> None:
        self.transport.close()


def open_stream(settings: Settings) -> RunStream:
    """The run stream at settings.stream_url: Redis Streams for redis:// and rediss://, a
    table for a database URL. The transport's module is imported only when chosen."""
    url = settings.stream_url
    options = dict(
        retention_seconds=settings.stream_retention_seconds, max_events=settings.stream_max_events
    )
    transport: StreamTransport
    if settings.is_redis_stream:
        from runqueue.stream.redis_transport import RedisStreamTransport

        transport = RedisStreamTransport(url, **options)
    elif url.startswith(("sqlite", "postgresql")):
        from runqueue.stream.sql_transport import SqlStreamTransport

        transport = SqlStreamTransport(
            url,
            poll_interval=settings.stream_poll_interval,
            pool_size=settings.database_pool_size,
            **options,
        )
    else:
        raise SettingsError(
            f"RUNQUEUE_STREAM_URL {redact_url(url)!r}: expected redis://, rediss://, or the "
            "database URL"
        )
    return RunStream(transport, max_event_bytes=settings.stream_max_event_bytes)
