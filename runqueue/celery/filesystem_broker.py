"""kombu's filesystem transport (the embedded broker), with each message written atomically.

kombu writes a message file in place: it opens `<time>_<uuid>.<queue>.msg`, then writes the
JSON. A worker listing the folder in between reads an empty file, and Celery stops the
whole worker with "Unrecoverable error: JSONDecodeError" (celery/kombu#1551). It was seen
here about once in 400 runs created back to back. This transport writes the message under
a name no consumer matches, then renames it into place, which POSIX makes atomic: a
consumer sees a whole message or none. Everything else is kombu's.
"""

from __future__ import annotations

import os
import threading
import uuid
from queue import Empty
from time import monotonic
from typing import Any

from celery import signals
from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps, loads


class Channel(filesystem.Channel):
    def __init__(self, connection: Any, **kwargs: Any) -> None:
        """Make the broker's folders when a connection first needs them, not when an app is
        created: a read-only command creates nothing."""
        options = connection.client.transport_options
        for key in ("data_folder_in", "data_folder_out", "control_folder"):
            if options.get(key):
                os.makedirs(options[key], exist_ok=True)
        super().__init__(connection, **kwargs)

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        """Put a message onto `queue`: written whole under a temporary name, then renamed."""
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        # The temporary name must not contain `<queue>.msg`: consumers pick files by that.
        temporary = os.path.join(self.data_folder_out, f".{uuid.uuid4()}.tmp")
        try:
            with open(temporary, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.replace(temporary, os.path.join(self.data_folder_out, name))
        except OSError as exc:
            raise ChannelError(f"Cannot add file {name!r} to directory") from exc

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        """Bind `queue` to `exchange` in its exchange file. kombu creates that file and
        locks it in two steps, so a second process binding at the same moment could lock
        the still-empty file first and fail on its JSON ("Unrecoverable error:
        JSONDecodeError": two workers starting at once, each binding one queue per
        assistant). Here the file is created and opened in one call, locked, read (empty:
        no bindings yet) and rewritten whole under the lock."""
        file = self._exchange_file(exchange)
        self.control_folder.mkdir(exist_ok=True)
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        try:
            descriptor = os.open(file, os.O_RDWR | os.O_CREAT, 0o644)
            with os.fdopen(descriptor, "rb+", buffering=0) as handle:
                filesystem.lock(handle, filesystem.LOCK_EX)
                try:
                    queues = _bindings(handle.read())
                    if entry not in queues:
                        handle.seek(0)
                        handle.truncate()
                        handle.write(str_to_bytes(dumps([entry, *queues])))
                finally:
                    filesystem.unlock(handle)
        except OSError as exc:
            raise ChannelError(f"Cannot open {file}") from exc

    def get_table(self, exchange: str) -> list[Any]:
        """The exchange's bindings; none while a binder has created its file and not yet
        written it (kombu's raised JSONDecodeError there)."""
        file = self._exchange_file(exchange)
        try:
            with file.open("rb") as handle:
                filesystem.lock(handle, filesystem.LOCK_SH)
                try:
                    return _bindings(handle.read())
                finally:
                    filesystem.unlock(handle)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ChannelError(f"Cannot open {file}") from exc


def _bindings(content: bytes) -> list[Any]:
    text = content.decode()
    return [filesystem.exchange_queue_t(*row) for row in loads(text)] if text.strip() else []


# Set in a worker's main process once it shuts down: no message is waited for, or taken, again.
_shutting_down = threading.Event()


@signals.worker_shutting_down.connect
def _stop_waiting(**_: Any) -> None:
    """The worker's SIGTERM (or SIGINT, SIGQUIT) handler: its consumer takes no new message."""
    _shutting_down.set()


class Transport(filesystem.Transport):
    Channel = Channel

    def drain_events(self, connection: Any, timeout: float | None = None) -> None:
        """kombu's drain_events, but its sleep between two looks at the folder ends as soon as
        the worker shuts down, and a worker shutting down takes no further message."""
        started = monotonic()
        while not _shutting_down.is_set():
            try:
                self.cycle.get(self._deliver, timeout=timeout)
                return
            except Empty:
                if timeout is not None and monotonic() - started >= timeout:
                    break
                if self.polling_interval is not None:
                    wait = self.polling_interval
                    if timeout:
                        wait = min(wait, timeout)
                    _shutting_down.wait(wait)
        raise TimeoutError()  # socket.timeout, what kombu raises
