"""A real HTTP server in the test process that receives completion webhooks: it answers each
POST from a script (status codes, in order; the last one repeats), records every request and
what it answered, and can hold a request open until told to let it go."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from runqueue import webhooks


@dataclass
class Received:
    """One POST as the receiver saw it."""

    at: float  # time.monotonic()
    path: str
    headers: dict[str, str]
    raw: bytes
    answered: int | None = None  # the status written back (None: the client was gone)

    @property
    def body(self) -> dict[str, Any]:
        return json.loads(self.raw)

    @property
    def delivery_id(self) -> str:
        return self.headers.get(webhooks.DELIVERY_HEADER.lower(), "")

    def signed_by(self, secret: str) -> bool:
        return webhooks.verify(secret, self.headers, self.raw)


@dataclass
class Receiver:
    """Start with `start()`, stop with `stop()`; `url` is where to send."""

    script: list[int] = field(default_factory=lambda: [200])
    location: str = ""  # the Location header of a 3xx answer
    hold_first: bool = False  # the first request waits for release() before it answers
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.released = threading.Event()
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                entry = Received(
                    time.monotonic(),
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    raw,
                )
                with receiver.lock:
                    receiver.received.append(entry)
                    index = len(receiver.received) - 1
                receiver.arrived.set()
                if index == 0 and receiver.hold_first:
                    receiver.released.wait(60)
                script = receiver.script
                status = script[min(index, len(script) - 1)]
                try:
                    self.send_response(status)
                    if 300 <= status < 400:
                        self.send_header("Location", receiver.location)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                    self.wfile.flush()
                    entry.answered = status
                except OSError:  # the sender died while we held its request
                    pass

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def release(self) -> None:
        self.released.set()

    def stop(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()

    def of_run(self, run_id: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.delivery_id == run_id]
