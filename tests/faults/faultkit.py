"""Private service instances and measurements for the fault tests.

Outage tests stop and restart services, so they get PRIVATE redis-server and PostgreSQL
instances on free ports; the shared ones on 6379 and 5432 are never touched. Every process
started here is stopped by pid.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from runqueue import Settings, SyncRunManager, create_app
from tests.faults.fault_app import register_fault_assistants
from tests.support import Backend, WorkerProcess, create_database, wait_until

PG_BIN = Path("/usr/lib/postgresql/15/bin")
FAULT_APP = "tests.faults.fault_app:app"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


class PrivateRedis:
    """A redis-server that keeps nothing on disk: a restart loses every queued message."""

    def __init__(self, log_path: Path, password: str | None = None):
        self.port = free_port()
        self.log_path, self.password = log_path, password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        if self.password:
            argv += ["--requirepass", self.password]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: port_open(self.port), timeout=10, message="private redis up")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # SIGKILL: nothing is saved anyway
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


class PrivatePostgres:
    """A throwaway PostgreSQL 15 cluster (trust auth), run as the postgres user."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="runqueue-faults-pg-"))
        shutil.chown(self.root, "postgres")
        self.data = self.root / "data"
        self._as_postgres(
            PG_BIN / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8"
        )

    def _as_postgres(self, *argv: object) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run(
            prefix + [str(a) for a in argv], check=True, capture_output=True, timeout=120
        )

    def _ctl(self, action: str) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        argv = [PG_BIN / "pg_ctl", "-D", self.data, "-w", "-m", "fast", "-o", options]
        self._as_postgres(*argv, "-l", self.root / "log", action)

    def start(self) -> PrivatePostgres:
        self._ctl("start")
        return self

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._ctl("stop")

    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def create_database(self) -> str:
        return create_database(self.admin_url(), prefix="runqueue_fault")

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class TcpProxy:
    """A TCP proxy on a free loopback port that a test can cut and heal: a network partition
    between one process and a service, without root or network namespaces.

    `cut()` stops forwarding both ways and accepts no new connection: established sockets
    stay open but silent (the kernel still acknowledges what the client sends, so neither
    side sees a reset or a closed socket, as with dropped packets), and a new connection
    waits in the listen backlog. `heal()` closes the connections that lived through the cut
    (as if their peers had timed them out) and forwards new ones again, backlog first.
    Everything runs in one thread of the test process; `stop()` ends it and closes every
    socket."""

    BACKLOG = 64

    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=self.BACKLOG)
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._peer: dict[socket.socket, socket.socket] = {}  # each side -> the other
        self._commands: list[tuple[str, threading.Event]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=f"tcp-proxy-{self.port}")
        self._thread.daemon = True
        self.is_cut = False
        self.connections = 0  # accepted since start, for the tests' figures

    def start(self) -> TcpProxy:
        self._selector.register(self._wake_reader, selectors.EVENT_READ)
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._thread.start()
        return self

    def cut(self) -> None:
        """Partition: nothing passes either way from now on (when this returns)."""
        self._command("cut")

    def heal(self) -> None:
        """Drop the connections that lived through the cut; forward new ones again."""
        self._command("heal")

    def stop(self) -> None:
        """Close everything and end the thread (safe to call twice)."""
        if self._thread.is_alive():
            self._command("stop")
            self._thread.join(10)

    def _command(self, name: str) -> None:
        done = threading.Event()
        with self._lock:
            self._commands.append((name, done))
        self._wake_writer.send(b"x")
        if not done.wait(10):
            raise RuntimeError(f"TcpProxy on port {self.port}: {name} not applied in 10 s")

    def _loop(self) -> None:
        while True:
            for key, _mask in self._selector.select():
                sock = key.fileobj
                if sock is self._wake_reader:
                    self._wake_reader.recv(4096)
                    if not self._apply_commands():
                        return
                elif sock is self._listener:
                    self._accept()
                elif sock in self._peer:
                    self._forward(sock)  # type: ignore[arg-type]

    def _apply_commands(self) -> bool:
        with self._lock:
            commands, self._commands = self._commands, []
        running = True
        for name, done in commands:
            if name == "cut" and not self.is_cut:
                self.is_cut = True
                self._selector.unregister(self._listener)
                for sock in self._peer:
                    self._selector.unregister(sock)
            elif name == "heal" and self.is_cut:
                self.is_cut = False
                for sock in list(self._peer):
                    self._close(sock)
                self._selector.register(self._listener, selectors.EVENT_READ)
            elif name == "stop":
                for sock in list(self._peer):
                    self._close(sock)
                self._selector.close()
                self._listener.close()
                self._wake_reader.close()
                self._wake_writer.close()
                running = False
            done.set()
        return running

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        self.connections += 1
        for sock in (client, upstream):
            sock.setblocking(True)
            sock.settimeout(5)
        self._peer[client], self._peer[upstream] = upstream, client
        self._selector.register(client, selectors.EVENT_READ)
        self._selector.register(upstream, selectors.EVENT_READ)

    def _forward(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
            if data:
                self._peer[sock].sendall(data)
                return
        except OSError:
            pass
        self._close(sock)  # one side closed (or failed): close both, as a TCP proxy does

    def _close(self, sock: socket.socket) -> None:
        other = self._peer.pop(sock, None)
        for each in (sock, other):
            if each is None:
                continue
            self._peer.pop(each, None)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(each)
            each.close()


def fault_backend(tmp_path: Path, database_url: str, broker_url: str, **overrides: Any) -> Backend:
    """A migrated backend with short leases: heartbeat 1 s, lease 4 s, fence margin 1 s,
    maintenance 0.5 s."""
    suffix = uuid.uuid4().hex[:10]
    values: dict[str, Any] = dict(
        data_dir=tmp_path / f"data-{suffix}",
        queue=f"runqueue-fault-{suffix}",
        database_url=database_url,
        broker_url=broker_url,
        app=FAULT_APP,
        heartbeat_interval=1.0,
        lease_seconds=4.0,
        fence_margin_seconds=1.0,  # a cut-off run stops itself 3 s after its last renewal
        maintenance_interval=0.5,
        republish_after=30.0,
        status_write_timeout=60.0,
    )
    values.update(overrides)
    backend = Backend("faults", Settings(**values))
    backend.migrate()
    return backend


def manager_for(settings: Settings) -> SyncRunManager:
    app = create_app(settings, name=f"faults-{uuid.uuid4().hex[:6]}")
    register_fault_assistants(app)
    return SyncRunManager(app)


def start_workers(settings: Settings, log_dir: Path, count: int = 1, **options: Any) -> list:
    """Start `count` workers at once (in parallel: each takes seconds to be ready)."""
    from concurrent.futures import ThreadPoolExecutor

    workers = [
        WorkerProcess(
            settings,
            log_dir / f"worker-{uuid.uuid4().hex[:6]}.log",
            **options,
        )
        for _ in range(count)
    ]
    with ThreadPoolExecutor(count) as pool:
        list(pool.map(lambda w: w.start(), workers))
    return workers


def kill_process_tree(worker: WorkerProcess) -> None:
    """SIGKILL the worker's main process and its pool children at once (a host crash)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)


def through_proxies(
    settings: Settings,
    *,
    broker: TcpProxy,
    database: TcpProxy | None = None,
    **overrides: Any,
) -> Settings:
    """The same settings, reaching Redis (broker and stream) and, if given, PostgreSQL only
    through these proxies: what a test cuts off."""
    broker_url = _via(settings.broker_url, broker)
    if database is not None:
        overrides["database_url"] = _via(settings.database_url, database)
    return settings.with_overrides(broker_url=broker_url, stream_url=broker_url, **overrides)


def _via(url: str, proxy: TcpProxy) -> str:
    """The same URL, reaching its service through the proxy."""
    return make_url(url).set(port=proxy.port).render_as_string(hide_password=False)


def what_was_written(manager: SyncRunManager, run_id: str, thread_id: str) -> dict[str, Any]:
    """Everything a worker could write for a run: its row, history, checkpoints, stream (a
    fenced-off process must change none of it)."""
    record = manager.get(run_id)
    assert record is not None
    return {
        "row": (record.status, record.error, record.ended_at, record.attempt),
        "events": [(e.status, e.detail) for e in manager.events(run_id)],
        "checkpoints": [c.values for c in manager.checkpoints(thread_id) if c.run_id == run_id],
        "stream": [(e.id, e.event, e.data) for e in manager.stream(run_id)],
    }


def figure(scenario: str, **fields: Any) -> str:
    """The one line a fault test prints; docs/reliability.md collects them."""
    parts = [f"scenario={scenario}"]
    for name, value in fields.items():
        parts.append(f"{name}={value:.1f}" if isinstance(value, float) else f"{name}={value}")
    line = "FIGURE " + " ".join(parts)
    print(line, flush=True)
    path = os.environ.get("RUNQUEUE_FIGURES")
    if path:
        with open(path, "a") as handle:
            handle.write(line + "\n")
    return line


def wait_for(predicate, timeout: float, message: str):  # noqa: ANN001, ANN201
    return wait_until(predicate, timeout=timeout, interval=0.05, message=message)


def monotonic() -> float:
    return time.monotonic()
