"""Partitions: a worker that is alive but cut off from PostgreSQL and Redis (or from its broker
only), through a TcpProxy the test cuts and heals, while a second worker reaches both.

The cut-off run must stop itself before its lease ends (self-fencing), so that the thread's
next run, started once the other worker reaped the first, never overlaps it; after the heal
the cut-off worker writes nothing more for the old run and takes new runs again.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
import uuid
from datetime import datetime

import psycopg
from sqlalchemy import update
from sqlalchemy.engine import make_url

from runqueue import RunStatus
from runqueue.journal import Journal
from runqueue.store.database import IDLE_IN_TRANSACTION_TIMEOUT_MS, get_engine
from runqueue.store.decisions import NewRun, RunStore
from runqueue.store.models import Run
from runqueue.store.queries import RunQueries
from runqueue.validation import new_run_id
from tests.faults import faultkit
from tests.support import RunFactory, pid_alive

FENCE_LINE = re.compile(r"run (\S+) fenced: no lease renewal for ([\d.]+)s")


def _thread() -> str:
    return f"partition-{uuid.uuid4().hex[:10]}"


class LeaseWatcher(threading.Thread):
    """Reads a run's lease_expires_at straight from PostgreSQL every 50 ms: the last lease
    the database held for it, as epoch seconds, to compare with the journal's times."""

    def __init__(self, database_url: str, run_id: str):
        super().__init__(name=f"lease-watcher-{run_id[-6:]}", daemon=True)
        self.url = make_url(database_url).set(drivername="postgresql")
        self.run_id = run_id
        self.last: datetime | None = None
        self.stopped = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url.render_as_string(hide_password=False)) as conn:
            conn.autocommit = True
            while not self.stopped.wait(0.05):
                row = conn.execute(
                    "SELECT status, lease_expires_at FROM runs WHERE run_id = %s", (self.run_id,)
                ).fetchone()
                if row is not None and row[1] is not None:
                    self.last = row[1]
                if row is not None and row[0] != "running" and self.last is not None:
                    return

    def begin(self) -> LeaseWatcher:
        self.start()
        return self

    def lease_end(self) -> float:
        self.stopped.set()
        self.join(10)
        assert self.last is not None, "never saw the run's lease"
        return self.last.timestamp()


def _behind_proxies(settings, tcp_proxy):  # noqa: ANN001, ANN202
    """Proxies in front of this backend's PostgreSQL and Redis, and the settings of a worker
    that reaches both only through them: (database proxy, Redis proxy, settings)."""
    pg_proxy = tcp_proxy(make_url(settings.database_url).port or 5432)
    redis_proxy = tcp_proxy(make_url(settings.broker_url).port or 6379)
    cut_off = faultkit.through_proxies(settings, broker=redis_proxy, database=pg_proxy)
    return pg_proxy, redis_proxy, cut_off


def test_a_session_cut_off_inside_a_transaction_does_not_keep_the_reaper_waiting(
    shared_backend, tcp_proxy
):
    """A process cut off from PostgreSQL after a statement and before its COMMIT (a lease
    renewal, say) leaves a session the server believes alive, holding the run's row lock. The
    server must end it (IDLE_IN_TRANSACTION_TIMEOUT_MS), so the reaper's write goes through:
    without that it waited until the heal (the partition test, under load, once in a few
    runs: 'still running after 14.0s')."""
    settings = shared_backend.settings
    pg_proxy = tcp_proxy(make_url(settings.database_url).port or 5432)
    store = RunStore(settings.database_url)
    run_id = new_run_id()
    store.create_run(
        NewRun(
            run_id=run_id,
            thread_id=_thread(),
            assistant_id="echo",
            user_id=None,
            multitask_strategy=None,
            on_disconnect="continue",
            metadata={},
            kwargs={},
            follow_up_to_run_id=None,
        ),
        check_strategy=True,
    )
    assert store.claim_run(run_id, "cut-off", "t1", 0.5).claimed
    proxied = make_url(settings.database_url).set(port=pg_proxy.port)
    cut_off = get_engine(proxied.render_as_string(hide_password=False))
    updated, release = threading.Event(), threading.Event()

    def renew_then_lose_the_database() -> None:
        with contextlib.suppress(Exception), cut_off.begin() as conn:
            conn.execute(update(Run).where(Run.run_id == run_id).values(worker="cut-off"))
            updated.set()
            release.wait(30)  # the COMMIT goes out after the cut, and is lost

    holder = threading.Thread(target=renew_then_lose_the_database, daemon=True)
    holder.start()
    assert updated.wait(10)
    pg_proxy.cut()
    release.set()
    time.sleep(0.6)  # the lease (0.5 s) has run out
    reaped: list[float] = []

    def reap() -> None:
        started = time.monotonic()
        changed, _ = store.finish_run(
            run_id, RunStatus.error, token="t1", lease_over=True, error="worker lost"
        )
        reaped.append(time.monotonic() - started)
        assert changed

    reaper = threading.Thread(target=reap, daemon=True)
    reaper.start()
    reaper.join(IDLE_IN_TRANSACTION_TIMEOUT_MS / 1000 + 10)
    pg_proxy.heal()
    holder.join(30)
    cut_off.dispose()
    print(f"the reaper's write waited {reaped[0] if reaped else -1:.2f} s")
    assert reaped and reaped[0] < IDLE_IN_TRANSACTION_TIMEOUT_MS / 1000 + 2
    assert RunQueries(store).get(run_id).status is RunStatus.error


def test_a_worker_cut_off_from_database_and_redis_stops_its_run_before_the_lease_ends(
    shared_backend, workers, tcp_proxy, report, tmp_path
):
    settings = shared_backend.settings
    pg_proxy, redis_proxy, cut_off = _behind_proxies(settings, tcp_proxy)
    manager = faultkit.manager_for(settings)
    journal = Journal(tmp_path / "journal.jsonl")
    factory = RunFactory(manager, journal)
    (worker_a,) = workers(cut_off, concurrency=1)
    thread_id = _thread()
    first = factory(thread_id, steps=400, delay=0.1)
    faultkit.wait_for(
        lambda: journal.count(run_id=first.run_id, event="step") >= 2, 30, "the first run's steps"
    )
    following = factory(thread_id, steps=3, delay=0.05, strategy="enqueue")
    (worker_b,) = workers(settings, concurrency=1)
    pid = journal.pid(first.run_id)
    assert pid in worker_a.pool_pids()
    leases = LeaseWatcher(settings.database_url, first.run_id).begin()
    time.sleep(1.5)  # the watcher sees a renewal or two

    cut_at = time.time()
    pg_proxy.cut()
    redis_proxy.cut()
    # The process stops by itself: it cannot reach the database to learn anything.
    faultkit.wait_for(
        lambda: not pid_alive(pid), settings.lease_seconds + 5, "R1's process to stop"
    )
    stopped_at = time.time()
    ended = manager.join(first.run_id, timeout=settings.lease_seconds + 10)
    lease_end = leases.lease_end()
    next_run = manager.join(following.run_id, timeout=30)
    last_line = journal.lines(run_id=first.run_id)[-1]
    next_start = journal.first(following.run_id)
    assert next_start is not None

    time.sleep(max(0.0, cut_at + settings.lease_seconds + 10 - time.time()))
    before_heal = faultkit.what_was_written(manager, first.run_id, thread_id)
    pg_proxy.heal()
    redis_proxy.heal()
    healed_at = time.time()
    # The cut-off worker reconnects; whatever it would still write for R1 is there by now.
    time.sleep(settings.lease_seconds + 2)
    after_heal = faultkit.what_was_written(manager, first.run_id, thread_id)

    # ... and takes new runs again (the other worker is gone).
    b_pids = worker_b.pool_pids()
    worker_b.stop()
    later = factory(_thread(), steps=2, delay=0.05)
    later_done = manager.join(later.run_id, timeout=60)

    log = worker_a.log()
    fenced = [m for m in FENCE_LINE.finditer(log) if m.group(1) == first.run_id]
    hard_stopped = f"run {first.run_id} still executing" in log
    report(
        "partition-db-and-redis",
        runs=3,
        lost=0 if next_run.is_final and later_done.is_final else 1,
        duplicated=journal.duplicated(),
        overlapping=journal.overlapping(),
        fenced_after_renewal_s=float(fenced[0].group(2)) if fenced else -1.0,
        stopped_after_cut_s=stopped_at - cut_at,
        stopped_before_lease_end_s=lease_end - stopped_at,
        body_ended_before_lease_end_s=lease_end - last_line["time"],
        reaped_after_lease_end_s=ended.ended_at.timestamp() - lease_end,
        next_started_after_stop_s=next_start["time"] - stopped_at,
        hard_stop=hard_stopped,
        written_after_heal=int(after_heal != before_heal),
        new_run_after_heal_s=later_done.ended_at.timestamp() - healed_at,
    )
    # R1's process stopped before its lease ended (journal and process), by its own fence.
    assert stopped_at < lease_end and last_line["time"] < lease_end
    assert fenced, f"no fencing line for {first.run_id} in the worker's log"
    # The other worker reaped it; the thread's next run executed, after, not alongside.
    assert ended.status is RunStatus.error and "lease expired" in (ended.error or "")
    assert next_run.status is RunStatus.success
    assert journal.pid(following.run_id) in b_pids
    assert journal.overlapping() == 0 and journal.duplicated() == 0
    assert next_start["time"] > last_line["time"]
    # After the heal: nothing more for R1; new runs again, on the worker that was cut off.
    assert after_heal == before_heal
    assert later_done.status is RunStatus.success
    assert journal.pid(later.run_id) in worker_a.pool_pids()


def test_a_worker_cut_off_from_its_broker_still_stops_a_cancelled_run(
    shared_backend, workers, tcp_proxy, report, tmp_path
):
    """Only Redis (broker and stream) is cut: the revoke broadcast cannot reach the worker,
    but its heartbeat reads the cancel from the database (a hung stream store stalls not the
    heartbeat). After the heal, the message that was never acknowledged comes back, and the
    run does not execute again."""
    settings = shared_backend.settings
    redis_proxy = tcp_proxy(make_url(settings.broker_url).port or 6379)
    cut_off = faultkit.through_proxies(
        settings,
        broker=redis_proxy,
        # The unacknowledged message comes back soon after the heal, within the test.
        broker_visibility_timeout=10.0,
    )
    manager = faultkit.manager_for(settings)
    journal = Journal(tmp_path / "journal.jsonl")
    factory = RunFactory(manager, journal)
    (worker_a,) = workers(cut_off, concurrency=1)
    # Long steps: between two checkpoints only the heartbeat can notice the cancel.
    run = factory(_thread(), steps=20, delay=5.0)
    faultkit.wait_for(lambda: journal.first(run.run_id), 30, "the run to start")
    assert journal.pid(run.run_id) in worker_a.pool_pids()

    redis_proxy.cut()
    # A beat passes first: its keep-alive of the stream (whose Redis is cut too) hangs, and
    # must not hang the renewals, which read the cancel.
    time.sleep(settings.heartbeat_interval + 0.5)
    cancelled_at = time.time()
    assert manager.cancel(run.run_id)
    bound = settings.heartbeat_interval + 1.0  # one beat, plus a step and scheduling slack
    end = faultkit.wait_for(lambda: journal.first(run.run_id, "end"), bound + 5, "the run to stop")
    stopped_after = end["time"] - cancelled_at
    time.sleep(2.0)
    redis_proxy.heal()
    healed_at = time.time()
    ended = manager.join(run.run_id, timeout=settings.status_write_timeout)
    # The message is delivered again (it was never acknowledged); the claim skips it.
    redelivered = faultkit.wait_for(
        lambda: f"run {run.run_id} not started" in worker_a.log(), 40, "the redelivery"
    )
    time.sleep(1.0)
    report(
        "partition-broker-cancel",
        runs=1,
        lost=0 if ended.is_final else 1,
        duplicated=journal.duplicated(),
        overlapping=journal.overlapping(),
        stopped_after_cancel_s=stopped_after,
        bound_s=bound,
        final_after_heal_s=ended.ended_at.timestamp() - healed_at,
        redelivered=int(bool(redelivered)),
        executions=journal.starts()[run.run_id],
    )
    assert stopped_after <= bound
    assert ended.status is RunStatus.interrupted
    assert journal.starts()[run.run_id] == 1


def test_a_cut_off_threads_pool_run_stops_at_its_next_cooperative_check(
    shared_backend, workers, tcp_proxy, report, tmp_path
):
    """The threads pool cannot signal a run: the fence is the cooperative check. A run that
    emits (emit() is one) stops at its first emit past the deadline, before its lease ends;
    the worker stays up."""
    settings = shared_backend.settings
    pg_proxy, redis_proxy, cut_off = _behind_proxies(settings, tcp_proxy)
    manager = faultkit.manager_for(settings)
    journal = Journal(tmp_path / "journal.jsonl")
    factory = RunFactory(manager, journal)
    (worker_a,) = workers(cut_off, concurrency=2, pool="threads")
    thread_id = _thread()
    first = factory(thread_id, assistant="emitter", count=100_000, delay=0.05)
    faultkit.wait_for(lambda: journal.count(run_id=first.run_id, event="tick") >= 5, 30, "ticks")
    following = factory(thread_id, steps=3, delay=0.05, strategy="enqueue")
    workers(settings, concurrency=1)
    assert journal.pid(first.run_id) == worker_a.pid
    leases = LeaseWatcher(settings.database_url, first.run_id).begin()
    time.sleep(1.5)

    cut_at = time.time()
    pg_proxy.cut()
    redis_proxy.cut()
    end = faultkit.wait_for(
        lambda: journal.first(first.run_id, "end"), settings.lease_seconds + 5, "R1 to stop"
    )
    ended = manager.join(first.run_id, timeout=settings.lease_seconds + 10)
    lease_end = leases.lease_end()
    next_run = manager.join(following.run_id, timeout=30)
    pg_proxy.heal()
    redis_proxy.heal()
    report(
        "partition-threads-pool",
        runs=2,
        lost=0 if next_run.is_final else 1,
        duplicated=journal.duplicated(),
        overlapping=journal.overlapping(),
        stopped_after_cut_s=end["time"] - cut_at,
        stopped_before_lease_end_s=lease_end - end["time"],
        ticks_after_stop=len(
            [t for t in journal.lines(run_id=first.run_id, event="tick") if t["time"] > end["time"]]
        ),
    )
    assert end["time"] < lease_end
    assert ended.status is RunStatus.error and "lease expired" in (ended.error or "")
    assert next_run.status is RunStatus.success
    assert journal.overlapping() == 0
    assert f"run {first.run_id} fenced" in worker_a.log()
    assert worker_a.process is not None and worker_a.process.poll() is None
