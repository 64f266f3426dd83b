"""Completion webhooks survive their deliverer's death: the API process and the worker whose
delivery loop is in the middle of a POST are SIGKILLed; a new worker sends the webhook again
once the dead one's lease on it expires, and every run's webhook is acknowledged exactly
once (PostgreSQL + Redis)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import httpx

from runqueue.webhooks import WebhookState
from tests.api_support import api_server
from tests.conftest import require_services
from tests.faults import faultkit
from tests.support import WorkerProcess, make_backend, wait_until
from tests.webhook_receiver import Receiver

LEASE = 8.0  # webhook_lease_seconds: how long a dead deliverer's claim holds its row


def test_the_api_and_the_delivering_worker_killed_mid_delivery_lose_no_webhook(
    tmp_path: Path, report
) -> None:  # noqa: ANN001
    require_services()
    backend = make_backend(
        "postgres_redis",
        tmp_path,
        api_auth="off",
        webhook_secret="kill-test",
        webhook_allowed_hosts="127.0.0.1",
        webhook_backoff_initial=0.2,
        webhook_poll_interval=0.1,
        webhook_timeout=LEASE - 2,  # the held POST must outlive the kill, not time out first
        webhook_lease_seconds=LEASE,
    )
    receiver = Receiver(script=[503, 200], hold_first=True).start()
    first = WorkerProcess(backend.settings, tmp_path / "first.log").start()
    server = api_server(backend.settings, tmp_path / "api.log").start()
    second = None
    try:
        manager = backend.manager()
        http = httpx.Client(base_url=server.url, timeout=30)
        tid = http.post("/threads", json={}).json()["thread_id"]

        def create(word: str) -> str:
            body = {"assistant_id": "echo", "input": {"word": word}, "webhook": receiver.url}
            response = http.post(f"/threads/{tid}/runs", json=body)
            assert response.status_code == 200, response.text
            return response.json()["run_id"]

        held = create("held")
        assert receiver.arrived.wait(30), "the first webhook never arrived"
        queued = create("queued")  # ends while the loop is stuck in the held POST
        manager.join(queued, timeout=30)
        assert manager.webhook_delivery(queued).state is WebhookState.pending
        faultkit.kill_process_tree(first)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        receiver.release()  # the held POST answers 503 to a sender that is gone
        second = WorkerProcess(backend.settings, tmp_path / "second.log").start()
        for run_id in (held, queued):
            wait_until(
                lambda run_id=run_id: (
                    manager.webhook_delivery(run_id).state is WebhookState.delivered
                ),
                timeout=LEASE + 30,
                message=f"the webhook of {run_id} delivered",
            )
        recovered_s = time.monotonic() - killed_at
        time.sleep(1.0)  # several polls: nothing more is sent
        for run_id in (held, queued):
            posts = receiver.of_run(run_id)
            assert [post.answered for post in posts].count(200) == 1, run_id
            assert all(post.signed_by("kill-test") for post in posts)
            assert {post.body["status"] for post in posts} == {"success"}
        held_history = manager.webhook_delivery(held).history
        assert [a.outcome for a in held_history] == ["lost", "delivered"]
        assert held_history[0].worker != held_history[1].worker
        assert [a.outcome for a in manager.webhook_delivery(queued).history] == ["delivered"]
        assert len(receiver.of_run(held)) == 2 and len(receiver.of_run(queued)) == 1
        report(
            "webhook_deliverer_killed",
            lease_s=LEASE,
            recovered_after_kill_s=round(recovered_s, 2),
            posts=len(receiver.received),
            acknowledged=2,
        )
    finally:
        for process in (second, first):
            if process is not None:
                process.stop()
        server.stop()
        receiver.stop()
        backend.close()
