"""The soak: mixed strategies on three workers for 20 minutes, with a random fault every 20 s.

Not in the default run (tests/conftest.py collects tests/soak only when asked for):

    pytest tests/soak -s                          # 20 minutes, as docs/reliability.md reports
    RUNQUEUE_SOAK_SECONDS=120 pytest tests/soak -s  # a short try

Each worker reaches PostgreSQL and its Redis only through a TcpProxy of its own, so a partition
cuts one worker off and leaves the others. The faults, one every RUNQUEUE_SOAK_FAULT_SECONDS
(20): SIGKILL a worker's main process with its children (a host crash; the worker is
restarted, as a supervisor would), SIGKILL one pool child, restart Redis (it keeps nothing on
disk), cut one worker off from both services for lease + 3 s, SIGSTOP one pool child past its
lease. The verdict comes from the journal the assistants write, not from runqueue's statuses:
no run lost, none executed twice, no two runs of a thread overlapping, every thread's runs
started in creation order, no thread stuck; the p99 from create to start is reported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import random
import signal
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from runqueue import ConflictError, RunStatus, Settings
from runqueue.cli.processes import WorkerProcessError, pid_alive
from runqueue.journal import Journal
from tests.faults import faultkit
from tests.support import WorkerProcess

SECONDS = float(os.environ.get("RUNQUEUE_SOAK_SECONDS", "1200"))
FAULT_EVERY = float(os.environ.get("RUNQUEUE_SOAK_FAULT_SECONDS", "20"))
SEED = int(os.environ.get("RUNQUEUE_SOAK_SEED", str(random.randrange(1 << 30))))
WORKERS, PRODUCERS, THREADS = 3, 6, 40
STRATEGIES = ["enqueue"] * 12 + ["reject"] * 3 + ["interrupt"] * 2 + ["rollback"] * 2
FAULTS = ["sigkill-main", "sigkill-child", "redis-restart", "partition", "pause"]
# The suite's 300 s per-test timeout does not fit a soak: its length, plus start and drain.
pytestmark = [pytest.mark.soak, pytest.mark.timeout(int(SECONDS) + 900)]
FINAL = {RunStatus.success, RunStatus.error, RunStatus.interrupted, RunStatus.timeout}


@dataclasses.dataclass
class Member:
    """One worker of the fleet, with the proxies that are its only way to the services."""

    settings: Settings
    log: Path
    database: faultkit.TcpProxy
    broker: faultkit.TcpProxy
    process: WorkerProcess | None = None
    restarts: int = 0
    exits: list[int] = dataclasses.field(default_factory=list)

    def start(self) -> None:
        self.process = WorkerProcess(self.settings, self.log, concurrency=2).start(timeout=120)

    def restart(self) -> None:
        if self.process is not None:
            self.process.stop()
        self.restarts += 1
        self.start()

    def child(self) -> int | None:
        pids = self.process.pool_pids() if self.process else []
        return random.choice(pids) if pids else None


class Fleet:
    """Three workers, each behind its own proxies, kept alive as a supervisor would."""

    def __init__(self, settings: Settings, redis: faultkit.PrivateRedis, log_dir: Path):
        self.redis, self.members = redis, []
        database_port = make_url(settings.database_url).port or 5432
        for index in range(WORKERS):
            database = faultkit.TcpProxy(database_port).start()
            broker = faultkit.TcpProxy(redis.port).start()
            proxied = faultkit.through_proxies(settings, broker=broker, database=database)
            self.members.append(Member(proxied, log_dir / f"worker-{index}.log", database, broker))

    def start(self) -> None:
        for member in self.members:
            member.start()

    def supervise(self) -> None:
        """Restart a worker that exited by itself (restart: on-failure would skip exit 0)."""
        for member in self.members:
            process = member.process
            if process is not None and process.process is not None:
                code = process.process.poll()
                if code is not None:
                    member.exits.append(code)
                    member.restart()

    def stop(self) -> None:
        for member in self.members:
            if member.process is not None:
                member.process.stop()
            member.database.stop()
            member.broker.stop()


class Producers:
    """Six threads creating runs on forty threads with every strategy, and some cancels."""

    def __init__(self, settings: Settings, journal: Journal):
        self.manager = faultkit.manager_for(settings)
        self.journal = journal
        self.threads = [f"soak-{n}-{uuid.uuid4().hex[:6]}" for n in range(THREADS)]
        self.created: list[tuple[str, str, float]] = []  # (run_id, thread_id, created time)
        self.rejected = self.cancels = self.create_errors = 0
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.workers = [threading.Thread(target=self._produce, args=(n,)) for n in range(PRODUCERS)]

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def stop(self) -> None:
        self.stopping.set()
        for worker in self.workers:
            worker.join(60)

    def _produce(self, n: int) -> None:
        rng = random.Random(SEED + n)
        while not self.stopping.is_set():
            thread_id = rng.choice(self.threads)
            try:
                if rng.random() < 0.05 and self.created:
                    with self.lock:
                        run_id = rng.choice(self.created[-50:])[0]
                    self.manager.cancel(run_id, action=rng.choice(["interrupt", "rollback"]))
                    self.cancels += 1
                else:
                    self._create(thread_id, rng.choice(STRATEGIES), rng)
            except ConflictError:
                self.rejected += 1
            except Exception:  # the database is reachable for producers: count, go on
                self.create_errors += 1
            self.stopping.wait(rng.uniform(0.5, 2.5))  # about 4 creates/s in all

    def _create(self, thread_id: str, strategy: str, rng: random.Random) -> None:
        at = time.time()
        run = self.manager.create_or_reject(
            thread_id,
            "steps",
            kwargs={
                "steps": rng.randint(2, 6),
                "delay": 0.2,
                "journal": str(self.journal),
            },
            multitask_strategy=strategy,
        )
        with self.lock:
            self.created.append((run.run_id, thread_id, at))


class Faults(threading.Thread):
    """One random fault every FAULT_EVERY seconds, each undone before the next."""

    def __init__(self, fleet: Fleet, settings: Settings):
        super().__init__(name="soak-faults", daemon=True)
        self.fleet, self.settings = fleet, settings
        self.rng = random.Random(SEED)
        self.stopping = threading.Event()
        self.done: Counter[str] = Counter()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stopping.wait(FAULT_EVERY):
                fault = self.rng.choice(FAULTS)
                getattr(self, "_" + fault.replace("-", "_"))(self.rng.choice(self.fleet.members))
                self.done[fault] += 1
                self.fleet.supervise()
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error

    def _sigkill_main(self, member: Member) -> None:
        assert member.process is not None
        faultkit.kill_process_tree(member.process)
        member.restart()

    def _sigkill_child(self, member: Member) -> None:
        pid = member.child()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _redis_restart(self, _member: Member) -> None:
        self.fleet.redis.stop()
        time.sleep(self.rng.uniform(1.0, 3.0))
        self.fleet.redis.start()

    def _partition(self, member: Member) -> None:
        member.database.cut()
        member.broker.cut()
        time.sleep(self.settings.lease_seconds + 3)
        member.database.heal()
        member.broker.heal()

    def _pause(self, member: Member) -> None:
        pid = member.child()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
            time.sleep(self.settings.lease_seconds + 2)
            os.kill(pid, signal.SIGCONT)


@pytest.fixture
def soak_settings(
    tmp_path: Path, shared_database: str, private_redis: faultkit.PrivateRedis
) -> tuple[Settings, faultkit.PrivateRedis]:
    backend = faultkit.fault_backend(tmp_path, shared_database, private_redis.url)
    return backend.settings, private_redis


def _verdict(producers: Producers, journal: Journal, drain_seconds: float) -> dict[str, Any]:
    """Wait for every run to end, then judge the run from the journal."""
    manager = producers.manager
    deadline = time.monotonic() + drain_seconds
    runs = {}
    for run_id, _thread_id, _at in producers.created:
        run = manager.get(run_id)
        while run is not None and run.status not in FINAL and time.monotonic() < deadline:
            time.sleep(0.2)
            run = manager.get(run_id)
        runs[run_id] = run
    statuses = Counter(run.status.value if run else "missing" for run in runs.values())
    stuck_threads = {
        thread_id
        for run_id, thread_id, _at in producers.created
        if runs[run_id] is None or runs[run_id].status not in FINAL
    }
    lines = journal.lines()
    ended = {line["run_id"] for line in lines if line["event"] == "end"}
    lost = [
        run_id
        for run_id, run in runs.items()
        if run is None
        or run.status not in FINAL
        or (run.status is RunStatus.success and run_id not in ended)
    ]
    first_start = {}
    for line in lines:
        if line["event"] == "start":
            first_start.setdefault(line["run_id"], line["time"])
    waits = sorted(
        first_start[run_id] - at for run_id, _t, at in producers.created if run_id in first_start
    )
    # FIFO as the registry defines it: (created_at, run_id), the database's order of creation
    # (two producers may get their answers in the other order).
    out_of_order = 0
    created = sorted((run.created_at, run.run_id) for run in runs.values() if run is not None)
    order = {run_id: n for n, (_at, run_id) in enumerate(created)}
    for thread_id in producers.threads:
        starts = [
            line["run_id"]
            for line in lines
            if line["event"] == "start" and line["thread_id"] == thread_id
        ]
        firsts = list(dict.fromkeys(starts))
        out_of_order += sum(1 for a, b in itertools.pairwise(firsts) if order[a] > order[b])

    def percentile(p: float) -> float:
        return waits[min(len(waits) - 1, int(p * len(waits)))] if waits else 0.0

    return dict(
        runs=len(runs),
        lost=len(lost),
        duplicated=journal.duplicated(),
        overlapping=journal.overlapping(),
        out_of_order=out_of_order,
        stuck_threads=len(stuck_threads),
        start_p50_s=percentile(0.5),
        start_p99_s=percentile(0.99),
        start_max_s=waits[-1] if waits else 0.0,
        statuses=dict(statuses),
        lost_ids=lost[:10],
    )


def test_soak_mixed_strategies_with_a_fault_every_20_seconds(soak_settings, tmp_path, report):
    settings, redis = soak_settings
    journal = Journal(tmp_path / "journal.jsonl")
    fleet = Fleet(settings, redis, tmp_path)
    producers = Producers(settings, journal)
    faults = Faults(fleet, settings)
    started = time.monotonic()
    try:
        fleet.start()
        producers.start()
        faults.start()
        while time.monotonic() - started < SECONDS and faults.error is None:
            time.sleep(1)
        faults.stopping.set()
        faults.join(60)
        producers.stop()
        fleet.supervise()
        verdict = _verdict(producers, journal, drain_seconds=120)
        alive = [pid_alive(m.process.pid) for m in fleet.members if m.process is not None]
    finally:
        producers.stopping.set()
        faults.stopping.set()
        fleet.stop()
    if faults.error is not None and not isinstance(faults.error, WorkerProcessError):
        raise faults.error
    exits = [code for member in fleet.members for code in member.exits]
    report(
        "soak",
        seconds=time.monotonic() - started,
        seed=SEED,
        faults=sum(faults.done.values()),
        **{f"fault_{name.replace('-', '_')}": faults.done[name] for name in FAULTS},
        rejected=producers.rejected,
        cancels=producers.cancels,
        create_errors=producers.create_errors,
        worker_exits=len(exits),
        worker_exits_zero=exits.count(0),
        **{k: v for k, v in verdict.items() if k not in ("statuses", "lost_ids")},
    )
    print("statuses", verdict["statuses"], "lost", verdict["lost_ids"], flush=True)
    assert faults.error is None, faults.error
    assert verdict["lost"] == 0, verdict["lost_ids"]
    assert verdict["duplicated"] == 0
    assert verdict["overlapping"] == 0
    assert verdict["out_of_order"] == 0
    assert verdict["stuck_threads"] == 0
    assert exits.count(0) == 0, "a worker exited 0 by itself"
    assert all(alive) and len(alive) == WORKERS, alive
