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
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


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


class Transport(filesystem.Transport):
    Channel = Channel
