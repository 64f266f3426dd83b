"""Completion webhooks, the parts every layer shares: a webhook URL checked (scheme, host,
the addresses it resolves to), the body posted (the reference server's), and its HMAC
signature. The delivery itself is the worker's (runqueue/worker/webhook_delivery.py); the
outbox is the store's (runqueue/store/webhook_deliveries.py).

Hand-written, not taken from a library: the checks are a few lines of the standard
library's `ipaddress` and `socket`, and the signature is `hmac`; langgraph_api's own SSRF
policy is not a dependency runqueue installs."""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from runqueue.errors import WebhookRefusedError, WebhookUnresolvedError
from runqueue.records import RunRecord, RunStatus

MAX_URL_LENGTH = 4096  # as the reference server's default
SCHEMES = ("http", "https")
SIGNATURE_HEADER = "X-Runqueue-Signature"  # "sha256=" + hex HMAC-SHA256
TIMESTAMP_HEADER = "X-Runqueue-Timestamp"  # unix seconds, signed with the body
DELIVERY_HEADER = "X-Runqueue-Delivery"  # the run id: one delivery per run, same on retries
SIGNATURE_TOLERANCE = 300  # seconds: what verify() accepts between timestamp and now

# Addresses no webhook may reach unless its host is allowed (RUNQUEUE_WEBHOOK_ALLOWED_HOSTS).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
METADATA_HOSTS = frozenset(
    {"metadata.google.internal", "metadata.amazonaws.com", "metadata", "instance-data"}
)
LOCALHOST_NAMES = frozenset({"localhost", "localhost.localdomain", "host.docker.internal"})
SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)
NAT64 = ipaddress.ip_network("64:ff9b::/96")
ERROR_TEXT = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*): (.*)$", re.DOTALL)


class WebhookState(enum.StrEnum):
    pending = "pending"  # to be sent (now, or at its next attempt's time)
    delivered = "delivered"  # the receiver answered 2xx: never sent again
    failed = "failed"  # given up: a refusal (4xx, 3xx, blocked address) or out of time


@dataclass(frozen=True)
class WebhookAttempt:
    """One POST of a run's webhook, as the delivering worker recorded it."""

    attempt: int
    started_at: datetime
    worker: str | None
    outcome: str  # sending (under way, or its worker died), delivered, retry, failed, lost
    status_code: int | None = None
    error: str | None = None
    duration_ms: int | None = None


@dataclass(frozen=True)
class WebhookDelivery:
    """A run's webhook: recorded with the run's final status, then delivered."""

    run_id: str
    url: str
    state: WebhookState
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    last_error: str | None
    history: list[WebhookAttempt] = field(default_factory=list)


def allowed_hosts(setting: str) -> frozenset[str]:
    """RUNQUEUE_WEBHOOK_ALLOWED_HOSTS as a set of lower-case host names or addresses."""
    return frozenset(h.strip().lower().strip("[]") for h in setting.split(",") if h.strip())


def blocked_reason(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why a webhook may not reach `address` (None: it may): loopback, private, link-local,
    multicast, reserved, unspecified, shared, NAT64 or a cloud metadata endpoint."""
    if address in METADATA_ADDRESSES:
        return "cloud metadata endpoint"
    if isinstance(address, ipaddress.IPv6Address):
        embedded = (
            address.ipv4_mapped
            or address.sixtofour
            or (ipaddress.IPv4Address(address.packed[-4:]) if address in NAT64 else None)
        )
        if embedded is not None:
            return blocked_reason(embedded) or "blocked IP range"
    for reason, hit in (
        ("loopback IP range", address.is_loopback),
        ("link-local IP range", address.is_link_local),
        ("multicast IP range", address.is_multicast),
        ("unspecified address", address.is_unspecified),
        ("reserved IP range", address.is_reserved),
        ("private IP range", address.is_private or address in SHARED_ADDRESS_SPACE),
        ("reserved IP range", not address.is_global),
    ):
        if hit:
            return reason
    return None


@dataclass(frozen=True)
class Target:
    """Where a webhook goes: its URL's parts and the checked addresses to connect to."""

    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]
    allowed: bool  # its host is in RUNQUEUE_WEBHOOK_ALLOWED_HOSTS: no address check


def check_url(url: str, allowed: frozenset[str] | str = frozenset()) -> str:
    """The webhook URL, checked and resolved as create() takes it: WebhookRefusedError (422)
    for a URL that is not http(s) with a host, or whose host is or resolves to an address
    no webhook may reach, unless the host is allowed. `allowed`: the setting's hosts."""
    resolve(url, allowed)
    return url


def resolve(url: str, allowed: frozenset[str] | str = frozenset()) -> Target:
    """The URL's host resolved, every address checked (WebhookRefusedError naming why):
    at create, and again at each send, which then connects to one of these addresses, so
    a host that resolves elsewhere in between (DNS rebinding) gains nothing."""
    if isinstance(allowed, str):
        allowed = allowed_hosts(allowed)
    if not isinstance(url, str) or not url:
        raise WebhookRefusedError("webhook: a URL (http:// or https://) is required")
    if len(url) > MAX_URL_LENGTH:
        raise WebhookRefusedError(f"webhook URL too long (at most {MAX_URL_LENGTH} characters)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookRefusedError(f"webhook URL is not valid: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise WebhookRefusedError("webhook URL must be http:// or https://")
    host = (parts.hostname or "").lower()
    if not host:
        raise WebhookRefusedError(f"invalid webhook hostname {host!r}")
    port = port or (443 if scheme == "https" else 80)
    if host in allowed:
        return Target(scheme, host, port, _addresses(host, port), allowed=True)
    if host in LOCALHOST_NAMES:
        raise _blocked("localhost address", host)
    if host in METADATA_HOSTS:
        raise _blocked("cloud metadata endpoint", host)
    addresses = _addresses(host, port)
    for address in addresses:
        reason = blocked_reason(ipaddress.ip_address(address))
        if reason is not None:
            raise _blocked(reason, host if host == address else f"{host} -> {address}")
    return Target(scheme, host, port, addresses, allowed=False)


def _addresses(host: str, port: int) -> tuple[str, ...]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise WebhookUnresolvedError(
            f"webhook host blocked: DNS resolution failed ({host})"
        ) from None
    addresses = tuple(dict.fromkeys(str(info[4][0]).partition("%")[0] for info in infos))
    if not addresses:
        raise _blocked("DNS resolution returned no results", host)
    return addresses


def _blocked(reason: str, where: str) -> WebhookRefusedError:
    return WebhookRefusedError(
        f"webhook host blocked: {reason} ({where}); RUNQUEUE_WEBHOOK_ALLOWED_HOSTS opens exceptions"
    )


# -- the body and its signature ------------------------------------------------------------


def body(run: RunRecord, sent_at: datetime | None = None) -> dict[str, Any]:
    """What the reference server posts: the run (as GET /runs/{id} answers it), its final
    status, start and end, when it was sent, its values (the run's result) and, for a failed
    run, its error as {"error", "message"}."""
    sent_at = sent_at or datetime.now(UTC)
    payload: dict[str, Any] = {
        "run_id": run.run_id,
        "thread_id": run.thread_id,
        "assistant_id": run.assistant_id,
        "created_at": (run.due_at or run.created_at).isoformat(),  # as GET answers it
        "updated_at": run.updated_at.isoformat(),
        "status": run.status.value,
        "metadata": run.metadata,
        "kwargs": run.kwargs,
        "multitask_strategy": run.multitask_strategy.value if run.multitask_strategy else None,
        "run_started_at": run.started_at.isoformat() if run.started_at else None,
        "run_ended_at": run.ended_at.isoformat() if run.ended_at else None,
        "webhook_sent_at": sent_at.isoformat(),
        "values": run.result,
    }
    if run.status in (RunStatus.error, RunStatus.timeout):
        text = run.error or run.status.value
        match = ERROR_TEXT.match(text)
        name, message = match.groups() if match else ("RunError", text)
        if run.status is RunStatus.timeout and not match:
            name = "TimeoutError"
        payload["error"] = {"error": name, "message": message}
    return payload


def signature(secret: str, timestamp: int, raw_body: bytes) -> str:
    """HMAC-SHA256 over `<timestamp>.<body>` with the secret, as its header carries it."""
    signed = str(timestamp).encode() + b"." + raw_body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signed_headers(
    secret: str, delivery_id: str, raw_body: bytes, now: float | None = None
) -> dict[str, str]:
    """The headers a delivery carries: its id, and with a secret its timestamp and
    signature (without one, a webhook is sent unsigned: docs/operations.md)."""
    headers = {"Content-Type": "application/json", DELIVERY_HEADER: delivery_id}
    if secret:
        timestamp = int(time.time() if now is None else now)
        headers[TIMESTAMP_HEADER] = str(timestamp)
        headers[SIGNATURE_HEADER] = signature(secret, timestamp, raw_body)
    return headers


def verify(
    secret: str,
    headers: Mapping[str, str],
    raw_body: bytes,
    *,
    tolerance: float = SIGNATURE_TOLERANCE,
    now: float | None = None,
) -> bool:
    """What a receiver checks: the signature matches the body and timestamp, and the
    timestamp is within `tolerance` seconds of now (a replayed old delivery fails)."""
    lowered = {key.lower(): value for key, value in headers.items()}
    given = lowered.get(SIGNATURE_HEADER.lower(), "")
    try:
        timestamp = int(lowered.get(TIMESTAMP_HEADER.lower(), ""))
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    return hmac.compare_digest(given, signature(secret, timestamp, raw_body))
