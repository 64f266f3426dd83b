"""Worker processes that the demo (and the test suite) start: `python -m runqueue worker` in a
session of its own, ready once it says so, and always stopped by its pid."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from runqueue.errors import RunQueueError
from runqueue.settings import Settings


class WorkerProcessError(RunQueueError):
    """The worker process exited or was not ready in time."""


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (an exited child not yet reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except OSError:  # /proc hidden from us (hidepid): ask the kernel instead
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return state not in ("Z", "X")


def child_pids(pid: int) -> list[int]:
    """Direct children of a process (a worker's pool processes), read from /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            children.append(int(entry.name))
    return children


class WorkerProcess:
    """A real `runqueue worker` process (prefork by default) for these settings. Its output
    goes to `log_path`; start() returns once it printed ready; stop() ends its whole process
    group, by pid, however it behaves."""

    COMMAND = ("runqueue", "worker")  # run as `python -m runqueue worker`: this interpreter

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        *,
        concurrency: int = 2,
        pool: str = "prefork",
        name: str = "worker",
        extra_env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ):
        self.settings, self.log_path = settings, log_path
        self.concurrency, self.pool, self.name = concurrency, pool, name
        self.extra_env, self.cwd = extra_env or {}, cwd
        self.process: subprocess.Popen[bytes] | None = None
        self._offset = 0
        self._stopped = False

    def start(self, timeout: float = 60.0) -> WorkerProcess:
        """Start it (a new node name each time) and wait until it is ready."""
        self._stopped = False
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self._offset = log.tell()  # a restarted worker appends to its log
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    *self.COMMAND,
                    f"--concurrency={self.concurrency}",
                    f"--pool={self.pool}",
                    f"--hostname={self.name}-{uuid.uuid4().hex[:8]}@%h",
                    "--loglevel=INFO",
                ],
                env=self.settings.process_environment() | self.extra_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.cwd,
            )
        deadline = time.monotonic() + timeout
        while " ready." not in self.log():
            self.check_alive()
            if time.monotonic() > deadline:
                self.stop()
                raise WorkerProcessError(
                    f"the worker was not ready in {timeout:.0f}s; see {self.log_path}\n{self.log()}"
                )
            time.sleep(0.05)
        return self

    @property
    def pid(self) -> int:
        if self.process is None:
            raise WorkerProcessError("the worker was not started")
        return self.process.pid

    def pool_pids(self) -> list[int]:
        return child_pids(self.pid)

    def check_alive(self) -> None:
        """WorkerProcessError if the process has exited."""
        if self.process is not None and self.process.poll() is not None:
            raise WorkerProcessError(
                f"the worker exited with code {self.process.returncode}; see {self.log_path}\n"
                f"{self.log()}"
            )

    def log(self) -> str:
        """What this start of the worker printed so far."""
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(self._offset)
                return handle.read().decode(errors="replace")
        except OSError:
            return ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the main process only (a real crash: its children are orphaned or die)."""
        os.kill(self.pid, sig)

    def stop(self, timeout: float = 20.0) -> None:
        """Warm shutdown (SIGTERM to its process group), then SIGKILL if anything lingers.
        Once only: a reaped pid may be reused, so a second call signals nothing."""
        if self.process is None or self._stopped:
            return
        self._stopped = True
        stop_process_group(self.process, timeout)


def stop_process_group(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM to the process group a child leads (its own session), wait up to `timeout`,
    then SIGKILL whatever of the group is left, and reap the child."""
    with contextlib.suppress(ProcessLookupError):
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout)
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
