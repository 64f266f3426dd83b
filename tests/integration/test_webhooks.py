"""Completion webhooks on both backends, delivered by a real worker to a real HTTP server in
this process: retried on 5xx with backoff and acknowledged once, signed, recorded by every
final status write in its own transaction, never following a redirect, and refused at create
for an address inside."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from runqueue.errors import ConflictError, WebhookRefusedError
from runqueue.records import RunStatus
from runqueue.registry import RunRequest, SyncRunManager
from runqueue.store.database import get_engine
from runqueue.webhooks import WebhookState
from tests.conftest import BACKENDS, require_services
from tests.support import (
    Backend,
    WorkerProcess,
    make_backend,
    run_cli,
    settings_env,
    wait_until,
)
from tests.webhook_receiver import Receiver

SECRET = "test-webhook-secret"
BACKOFF = 0.2  # seconds before the second attempt; doubling, capped at BACKOFF_MAX
BACKOFF_MAX = 0.8
HOOK_SETTINGS = dict(
    webhook_secret=SECRET,
    webhook_allowed_hosts="127.0.0.1",
    webhook_backoff_initial=BACKOFF,
    webhook_backoff_max=BACKOFF_MAX,
    webhook_poll_interval=0.1,
    webhook_timeout=2.0,
    webhook_lease_seconds=5.0,
)


@pytest.fixture(scope="module", params=BACKENDS)
def hook_backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    if request.param != "embedded":
        require_services()
    backend = make_backend(request.param, tmp_path_factory.mktemp(request.param), **HOOK_SETTINGS)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def hook_worker(hook_backend: Backend, tmp_path_factory: pytest.TempPathFactory):
    log = Path(tmp_path_factory.mktemp("worker")) / "worker.log"
    process = WorkerProcess(hook_backend.settings, log).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def hooks(hook_backend: Backend, hook_worker) -> SyncRunManager:  # noqa: ANN001
    return hook_backend.manager()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


def settled(manager: SyncRunManager, run_id: str, timeout: float = 30.0):  # noqa: ANN201
    """The run's delivery once delivered or failed."""
    return wait_until(
        lambda: (
            (d := manager.webhook_delivery(run_id)) and d.state is not WebhookState.pending and d
        ),
        timeout=timeout,
        message=f"the webhook of run {run_id} delivered or failed",
    )


def test_a_receiver_failing_three_times_gets_the_run_once_acknowledged_and_signed(
    hooks: SyncRunManager, receiver: Receiver, hook_backend: Backend
) -> None:
    receiver.script = [500, 500, 500, 200]
    run = hooks.create_or_reject("wh-retry", "echo", kwargs={"word": "hi"}, webhook=receiver.url)
    assert run.webhook == receiver.url
    done = hooks.join(run.run_id, timeout=30)
    delivery = settled(hooks, run.run_id)
    time.sleep(6 * 0.1 + BACKOFF_MAX)  # several polls and a full backoff: nothing more comes
    posts = receiver.of_run(run.run_id)
    assert [post.answered for post in posts] == [500, 500, 500, 200]
    assert len(receiver.received) == 4
    for post in posts:
        assert post.signed_by(SECRET), post.headers
        body = post.body
        assert (body["run_id"], body["thread_id"], body["status"]) == (
            run.run_id,
            "wh-retry",
            "success",
        )
        assert body["values"] == done.result == {"echo": {"word": "hi"}, "turn": 1}
        assert body["run_started_at"] and body["run_ended_at"] and body["webhook_sent_at"]
    assert delivery.state is WebhookState.delivered and delivery.attempts == 4
    assert [a.outcome for a in delivery.history] == ["retry", "retry", "retry", "delivered"]
    assert [a.status_code for a in delivery.history] == [500, 500, 500, 200]
    gaps = [later.at - earlier.at for earlier, later in zip(posts, posts[1:], strict=False)]
    for gap, wait in zip(gaps, (BACKOFF, 2 * BACKOFF, 4 * BACKOFF), strict=True):
        assert gap >= wait - 0.05, gaps  # the database's clock and ours: a little slack
    print(
        f"FIGURE webhook_retries backend={hook_backend.name} posts=4 acknowledged=1 "
        f"gaps_s={','.join(f'{g:.2f}' for g in gaps)} "
        f"end_to_delivered_s={(delivery.delivered_at - done.ended_at).total_seconds():.2f}"
    )


def test_every_final_write_records_the_delivery_in_its_transaction(
    hooks: SyncRunManager, receiver: Receiver
) -> None:
    """A worker's success and failure, set_status, a cancel of a pending run and of a running
    one, an interrupt strategy's cancel: each run's webhook gets exactly one POST with its
    final status. A run without a webhook, and a create its strategy refused, get none."""
    url = receiver.url
    ok = hooks.create_or_reject("wh-all-1", "echo", webhook=url)
    failed = hooks.create_or_reject("wh-all-2", "fail", kwargs={"message": "boom"}, webhook=url)
    busy = hooks.create_or_reject(
        "wh-all-3", "steps", kwargs={"steps": 50, "delay": 0.1}, webhook=url
    )
    held = hooks.create_or_reject("wh-all-3", "echo", multitask_strategy="enqueue", webhook=url)
    assert hooks.cancel(held.run_id)  # pending (held behind `busy`): interrupted at once
    with pytest.raises(ConflictError):
        hooks.create_or_reject("wh-all-3", "echo", multitask_strategy="reject", webhook=url)
    wait_until(lambda: hooks.get(busy.run_id).status is RunStatus.running, message="busy runs")
    replaced = hooks.create_or_reject(
        "wh-all-3", "echo", multitask_strategy="interrupt", webhook=url
    )
    set_by_hand = hooks.create_or_reject(
        "wh-all-4", "steps", kwargs={"steps": 20, "delay": 0.1}, webhook=url
    )
    assert hooks.set_status(set_by_hand.run_id, "error", error="set by hand")
    silent = hooks.create_or_reject("wh-all-5", "echo")
    expected = {
        ok.run_id: "success",
        failed.run_id: "error",
        held.run_id: "interrupted",
        busy.run_id: "interrupted",
        replaced.run_id: "success",
        set_by_hand.run_id: "error",
    }
    for run_id in expected:
        hooks.join(run_id, timeout=30)
        assert settled(hooks, run_id).state is WebhookState.delivered
    hooks.join(silent.run_id, timeout=30)
    time.sleep(0.5)
    for run_id, status in expected.items():
        posts = receiver.of_run(run_id)
        assert [post.body["status"] for post in posts] == [status], run_id
    assert receiver.of_run(silent.run_id) == [] and hooks.webhook_delivery(silent.run_id) is None
    assert len(receiver.received) == len(expected)  # the refused create wrote no webhook
    error = receiver.of_run(failed.run_id)[0].body["error"]
    assert error == {"error": "RuntimeError", "message": "boom"}


def test_a_redirect_is_never_followed(hooks: SyncRunManager, receiver: Receiver) -> None:
    """A 3xx fails the delivery at once: neither the address it names (here another local
    server, which would count a hit) nor a metadata address is ever asked."""
    inside = Receiver().start()
    try:
        for location in (inside.url, "http://169.254.169.254/latest/meta-data/"):
            receiver.received.clear()
            receiver.script, receiver.location = [302], location
            run = hooks.create_or_reject("wh-redirect", "echo", webhook=receiver.url)
            delivery = settled(hooks, run.run_id)
            assert delivery.state is WebhookState.failed and delivery.attempts == 1
            assert "redirect not followed" in (delivery.last_error or "")
            assert [post.answered for post in receiver.received] == [302]
        time.sleep(0.5)
        assert inside.received == []
    finally:
        inside.stop()


def test_a_webhook_to_an_address_inside_is_refused_at_create_with_nothing_written(
    hook_backend: Backend, hooks: SyncRunManager
) -> None:
    strict = hook_backend.manager(webhook_allowed_hosts="")
    before = len(strict.list_by_thread("wh-refused"))
    for url in (
        "http://127.0.0.1/",
        "http://localhost:8080/hook",
        "http://10.0.0.5/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "ftp://example.com/x",
    ):
        with pytest.raises(WebhookRefusedError, match="webhook"):
            strict.create_or_reject("wh-refused", "echo", webhook=url)
    assert len(strict.list_by_thread("wh-refused")) == before == 0
    env = settings_env(hook_backend.settings) | {"RUNQUEUE_WEBHOOK_ALLOWED_HOSTS": ""}
    done = run_cli(
        env, "submit", "echo", "--thread", "wh-refused", "--webhook", "http://127.0.0.1/"
    )
    assert done.returncode == 1, done
    assert done.stderr.strip().splitlines() == [
        "error: webhook host blocked: loopback IP range (127.0.0.1); "
        "RUNQUEUE_WEBHOOK_ALLOWED_HOSTS opens exceptions"
    ]
    assert strict.list_by_thread("wh-refused") == []


def test_runqueue_show_lists_the_attempts(
    hook_backend: Backend, hooks: SyncRunManager, receiver: Receiver
) -> None:
    receiver.script = [503, 200]
    env = settings_env(hook_backend.settings)
    done = run_cli(
        env, "submit", "echo", "--thread", "wh-show", "--webhook", receiver.url, "--wait"
    )
    assert done.returncode == 0, done
    run_id = done.stdout.split('"run_id": "')[1].split('"')[0]
    settled(hooks, run_id)
    shown = run_cli(env, "show", run_id, "--json")
    assert shown.returncode == 0, shown
    delivery = json.loads(shown.stdout)["webhook_delivery"]
    assert delivery["state"] == "delivered" and delivery["url"] == receiver.url
    assert [(a["outcome"], a["status_code"]) for a in delivery["history"]] == [
        ("retry", 503),
        ("delivered", 200),
    ]
    table = run_cli(env, "show", run_id)
    assert "webhook delivered" in table.stdout and "retry" in table.stdout


def test_the_reaper_and_a_batch_create_record_their_webhooks_too(
    hooks: SyncRunManager, receiver: Receiver
) -> None:
    """The reaper's final write (a lease run out) records the delivery like any other; a batch
    (create_many: pipelined on PostgreSQL) stores each request's webhook in its transaction."""
    lost = hooks.create_or_reject(
        "wh-reaped", "steps", kwargs={"steps": 100, "delay": 0.1}, webhook=receiver.url
    )
    wait_until(lambda: hooks.get(lost.run_id).status is RunStatus.running, message="running")
    with get_engine(hooks.settings.database_url).begin() as conn:  # as if its worker died
        conn.execute(
            text("UPDATE runs SET lease_expires_at = :past WHERE run_id = :run"),
            {"past": datetime(2000, 1, 1, tzinfo=UTC), "run": lost.run_id},
        )
    reaped = hooks.join(lost.run_id, timeout=30)  # the worker's maintenance pass reaps it
    assert reaped.status is RunStatus.error and "lease expired" in (reaped.error or "")
    assert settled(hooks, lost.run_id).state is WebhookState.delivered
    assert [p.body["status"] for p in receiver.of_run(lost.run_id)] == ["error"]

    batch = hooks.create_many(
        [RunRequest(f"wh-batch-{n}", "echo", webhook=receiver.url) for n in range(3)]
        + [RunRequest("wh-batch-none", "echo")]
    )
    assert [run.webhook for run in batch] == [receiver.url] * 3 + [None]
    for run in batch:
        hooks.join(run.run_id, timeout=30)
    for run in batch[:3]:
        assert settled(hooks, run.run_id).state is WebhookState.delivered
        assert len(receiver.of_run(run.run_id)) == 1
    assert hooks.webhook_delivery(batch[3].run_id) is None and not receiver.of_run(batch[3].run_id)


def test_a_crons_fired_runs_carry_its_webhook_and_their_threads_wait_for_it(
    hook_backend: Backend, hooks: SyncRunManager, receiver: Receiver
) -> None:
    """A stateless cron's webhook reaches every run it fires; its threads (deleted once the run
    ended, on_run_completed `delete`) are kept until the delivery is no longer pending: the
    first POSTs fail (500) for longer than a scheduler pass, and the retry still finds its
    delivery. A cron's webhook to an
    address inside is refused at create, as a run's is."""
    receiver.script = [500, 500, 500, 200]  # pending 1.4 s: past a scheduler pass (1 s)
    cron = hooks.create_cron("echo", schedule="* * * * * *", webhook=receiver.url)
    try:
        wait_until(lambda: any(f.run_id for f in hooks.cron_fires(cron.cron_id)), timeout=20)
    finally:
        hooks.update_cron(cron.cron_id, enabled=False)
    fired = [f for f in hooks.cron_fires(cron.cron_id) if f.run_id]
    for fire in fired:
        delivery = settled(hooks, fire.run_id)
        assert delivery.state is WebhookState.delivered, delivery
        assert receiver.of_run(fire.run_id)[-1].body["run_id"] == fire.run_id
        assert receiver.of_run(fire.run_id)[-1].signed_by(SECRET)
    assert [r.answered for r in receiver.received[:3]] == [500] * 3  # then retried
    wait_until(
        lambda: all(hooks.get_thread(f.thread_id) is None for f in fired),
        timeout=20,
        message="the fires' threads deleted once delivered",
    )
    hooks.delete_cron(cron.cron_id)
    strict = hook_backend.manager(webhook_allowed_hosts="")
    with pytest.raises(WebhookRefusedError, match="loopback"):
        strict.create_cron("echo", schedule="* * * * *", webhook="http://127.0.0.1/")


def test_a_thread_whose_webhook_is_pending_outlives_its_ttl(
    hook_backend: Backend, receiver: Receiver, tmp_path: Path
) -> None:
    """The ttl sweep deletes a thread's runs, and a run's pending delivery with it: a thread
    whose run's webhook is still being retried waits, past its ttl, until it is delivered."""
    sweeper = WorkerProcess(
        hook_backend.settings.with_overrides(maintenance_interval=0.3), tmp_path / "sweeper.log"
    ).start()
    try:
        manager = hook_backend.manager()
        ttl_minutes = 0.02  # 1.2 s
        thread = manager.create_thread(ttl=ttl_minutes).thread_id
        receiver.script = [503] * 8 + [200]  # about 5 s of retries (backoff capped at 0.8 s)
        run = manager.create_or_reject(thread, "echo", webhook=receiver.url)
        manager.join(run.run_id, timeout=30)
        wait_until(lambda: len(receiver.of_run(run.run_id)) >= 5, timeout=30)
        # Its ttl ran out seconds ago, and the sweep (every 0.3 s) has passed many times.
        assert manager.get_thread(thread) is not None
        assert manager.webhook_delivery(run.run_id).state is WebhookState.pending
        assert settled(manager, run.run_id).state is WebhookState.delivered
        wait_until(lambda: manager.get_thread(thread) is None, timeout=20, message="swept")
    finally:
        sweeper.stop()
