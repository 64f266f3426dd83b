"""Completion webhooks delivered: every worker's main process runs a WebhookLoop (a bootstep)
that claims due deliveries from the outbox (runqueue/store/webhook_deliveries.py), POSTs each
run, signed, and records the outcome.

- 2xx: delivered, never sent again.
- 5xx, 408, 429, a timeout, a refused or broken connection, a host that does not resolve:
  another attempt after an exponential backoff (webhook_backoff_initial, doubling, capped at
  webhook_backoff_max), until webhook_retry_for seconds after the first attempt: then failed.
- 3xx (redirects are never followed), any other 4xx, an address no webhook may reach:
  failed at once; asking again would get the same answer.

Safe against SSRF and DNS rebinding: the host is resolved and every address checked at each
send (runqueue.webhooks.resolve), and the POST connects to a checked address (the URL's host
kept in the Host header and, for https, in the TLS server name and certificate check)."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass

import httpx
from celery import bootsteps

from runqueue import webhooks
from runqueue.celery.app import runtime_of
from runqueue.errors import WebhookRefusedError, WebhookUnresolvedError
from runqueue.records import RunRecord
from runqueue.runtime import Runtime
from runqueue.settings import Settings
from runqueue.store import ClaimedDelivery, RunQueries, WebhookDeliveries

logger = logging.getLogger(__name__)
RETRIED_4XX = frozenset({408, 429})  # the receiver asks us to come back later
MAX_ERROR_TEXT = 500  # characters of an error kept in the attempt's row


@dataclass(frozen=True)
class SendOutcome:
    """What one POST came to: delivered, worth another attempt, or refused for good."""

    delivered: bool
    retry: bool
    status_code: int | None = None
    error: str | None = None


def send(settings: Settings, run: RunRecord, url: str, delivery_id: str) -> SendOutcome:
    """POST the run's body to `url`, signed, at a checked address, never following a
    redirect: the outcome, never an exception for the receiver's or the network's faults."""
    try:
        target = webhooks.resolve(url, settings.webhook_allowed_hosts)
    except WebhookUnresolvedError as exc:
        return SendOutcome(delivered=False, retry=True, error=str(exc))
    except WebhookRefusedError as exc:
        return SendOutcome(delivered=False, retry=False, error=str(exc))
    raw = json.dumps(webhooks.body(run), default=str).encode()
    headers = webhooks.signed_headers(settings.webhook_secret, delivery_id, raw)
    original = httpx.URL(url)
    headers["Host"] = original.netloc.decode("ascii")
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    last = SendOutcome(delivered=False, retry=True, error="no address to connect to")
    with httpx.Client(timeout=settings.webhook_timeout, follow_redirects=False) as client:
        for address in target.addresses:  # each a checked one: the first that answers
            pinned = original.copy_with(host=address)
            try:
                response = client.post(pinned, content=raw, headers=headers, extensions=extensions)
            except httpx.ConnectError as exc:
                last = SendOutcome(delivered=False, retry=True, error=f"connect: {exc}")
                continue
            except httpx.TimeoutException as exc:
                return SendOutcome(delivered=False, retry=True, error=f"timeout: {exc!r}")
            except httpx.HTTPError as exc:
                return SendOutcome(
                    delivered=False, retry=True, error=f"{type(exc).__name__}: {exc}"
                )
            return _judged(response)
    return last


def _judged(response: httpx.Response) -> SendOutcome:
    code = response.status_code
    if 200 <= code < 300:
        return SendOutcome(delivered=True, retry=False, status_code=code)
    if 300 <= code < 400:
        where = response.headers.get("location", "")
        return SendOutcome(
            delivered=False,
            retry=False,
            status_code=code,
            error=f"redirect not followed (to {where[:200]!r})",
        )
    retry = code >= 500 or code in RETRIED_4XX
    return SendOutcome(delivered=False, retry=retry, status_code=code, error=f"HTTP {code}")


def backoff(settings: Settings, attempt: int) -> float:
    """Seconds before attempt `attempt + 1`: the first backoff, doubling, capped."""
    return min(settings.webhook_backoff_initial * 2 ** (attempt - 1), settings.webhook_backoff_max)


def deliver_one(runtime: Runtime, worker: str) -> bool:
    """Claim one due delivery, send it and record the outcome; False: nothing was due."""
    settings = runtime.settings
    outbox = WebhookDeliveries(runtime.store)
    claimed = outbox.claim(worker, settings.webhook_lease_seconds, settings.webhook_retry_for)
    if claimed is None:
        return False
    run = RunQueries(runtime.store).get(claimed.run_id)
    started = time.monotonic()
    if run is None:  # deleted since: nothing to send
        outcome = SendOutcome(delivered=False, retry=False, error="the run was deleted")
    else:
        try:
            outcome = send(settings, run, claimed.url, claimed.run_id)
        except Exception as exc:  # recorded, so that backoff and the give-up time apply
            logger.exception("webhook of run %s: unexpected failure", claimed.run_id)
            outcome = SendOutcome(delivered=False, retry=True, error=f"{type(exc).__name__}")
    _record(outbox, claimed, outcome, settings, int((time.monotonic() - started) * 1000), run)
    return True


def _record(
    outbox: WebhookDeliveries,
    claimed: ClaimedDelivery,
    outcome: SendOutcome,
    settings: Settings,
    duration_ms: int,
    run: RunRecord | None,
) -> None:
    retry_in = backoff(settings, claimed.attempt) if outcome.retry else None
    error = outcome.error[:MAX_ERROR_TEXT] if outcome.error else None
    state = outbox.record(
        claimed,
        delivered=outcome.delivered,
        retry_in=retry_in,
        status_code=outcome.status_code,
        error=error,
        duration_ms=duration_ms,
    )
    action = f"webhook_{state.value}" if state is not None else "webhook_lease_lost"
    host = httpx.URL(claimed.url).host  # never the path or query: they may carry a token
    logger.log(
        logging.INFO if outcome.delivered else logging.WARNING,
        "webhook of run %s to %s: attempt %d, %s%s",
        claimed.run_id,
        host,
        claimed.attempt,
        action.removeprefix("webhook_"),
        f" ({error})" if error else "",
        extra={
            "run_id": claimed.run_id,
            "thread_id": run.thread_id if run else None,
            "action": action,
        },
    )


class WebhookLoop(threading.Thread):
    """The delivery loop a worker's main process runs while it lives: every worker delivers,
    each delivery claimed by one at a time."""

    def __init__(self, runtime: Runtime, worker: str):
        super().__init__(name="runqueue-webhooks", daemon=True)
        self.runtime, self.worker = runtime, worker
        self.stopped = threading.Event()

    def stop(self) -> None:
        """The delivery under way finishes; no further one starts."""
        self.stopped.set()

    def run(self) -> None:
        interval = self.runtime.settings.webhook_poll_interval
        while not self.stopped.is_set():
            try:
                if deliver_one(self.runtime, self.worker):
                    continue  # more may be due: no wait
            except Exception as exc:  # the database is down: try again next time
                logger.warning("webhook delivery pass failed: %s", exc)
            self.stopped.wait(interval)


class WebhookStep(bootsteps.StartStopStep):
    """The worker's bootstep that runs a WebhookLoop from start-up to shutdown."""

    label = "runqueue webhooks"
    requires = ("celery.worker.components:Pool",)

    def create(self, worker):  # noqa: ANN001, ANN201 - Celery's WorkController
        return WebhookLoop(runtime_of(worker.app), worker=worker.hostname)
