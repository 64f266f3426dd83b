"""Completion webhooks without services: the URL checks (SSRF), the body, the signature, the
backoff and the settings' bounds."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
from datetime import UTC, datetime

import pytest

from runqueue import webhooks
from runqueue.errors import SettingsError, WebhookRefusedError, WebhookUnresolvedError
from runqueue.records import DisconnectMode, MultitaskStrategy, RunRecord, RunStatus
from runqueue.settings import Settings
from runqueue.worker.webhook_delivery import backoff

REFUSED = {
    "http://127.0.0.1/": "loopback",
    "http://127.1.2.3:8080/hook": "loopback",
    "http://localhost/": "localhost",
    "http://LOCALHOST./": "DNS resolution failed",  # a trailing dot is not the name we know
    "http://[::1]/": "loopback",
    "http://[::ffff:127.0.0.1]/": "loopback",
    "http://10.1.2.3/": "private",
    "http://172.16.0.9/": "private",
    "http://192.168.1.1/": "private",
    "http://100.64.0.1/": "private",
    "http://[fc00::1]/": "private",
    "http://169.254.169.254/latest/meta-data/": "cloud metadata",
    "http://[fd00:ec2::254]/": "cloud metadata",
    "http://100.100.100.200/": "cloud metadata",
    "http://metadata.google.internal/": "cloud metadata",
    "http://169.254.1.1/": "link-local",
    "http://[fe80::1]/": "link-local",
    "http://224.0.0.1/": "multicast",
    "http://[ff02::1]/": "multicast",
    "http://0.0.0.0/": "unspecified",
    "http://240.0.0.1/": "reserved",
    "http://192.0.2.10/": "private|reserved",  # TEST-NET-1: documentation, never a host
    "http://[64:ff9b::a00:1]/": "private",  # NAT64 of 10.0.0.1
    "ftp://example.com/": "http:// or https://",
    "file:///etc/passwd": "http:// or https://",
    "/runs/crons": "http:// or https://",
    "http:///nohost": "hostname",
    "http://example.com:99999/": "not valid",
}


@pytest.mark.parametrize(("url", "why"), REFUSED.items())
def test_a_webhook_that_could_reach_inside_is_refused_naming_why(url: str, why: str) -> None:
    with pytest.raises(WebhookRefusedError, match=why) as refused:
        webhooks.check_url(url)
    assert refused.value.http_status == 422


def test_a_public_address_is_taken_and_allowed_hosts_open_exceptions() -> None:
    assert webhooks.check_url("https://93.184.216.34/hook?token=x") == (
        "https://93.184.216.34/hook?token=x"
    )
    assert webhooks.check_url("http://127.0.0.1:8123/hook", "127.0.0.1") == (
        "http://127.0.0.1:8123/hook"
    )
    assert webhooks.check_url("http://[::1]/", " ::1 , hooks.internal") == "http://[::1]/"
    target = webhooks.resolve("http://LocalHost:81/x", "localhost")
    assert (target.host, target.port, target.allowed) == ("localhost", 81, True)
    assert "127.0.0.1" in target.addresses or "::1" in target.addresses
    with pytest.raises(WebhookRefusedError):  # another loopback address is not the one allowed
        webhooks.check_url("http://127.0.0.2/", "127.0.0.1")


def test_a_host_that_does_not_resolve_is_refused_as_unresolved() -> None:
    with pytest.raises(WebhookUnresolvedError, match="DNS resolution failed"):
        webhooks.check_url("http://no-such-host.invalid/hook")


def test_every_blocked_reason_covers_the_ranges_the_reference_blocks() -> None:
    """langgraph_api's always-blocked, loopback and private ranges (lc_security/policy.py):
    the first address of each is refused here by default."""
    for network in (
        "169.254.0.0/16",
        "0.0.0.0/8",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "fe80::/10",
        "ff00::/8",
        "::1/128",
        "fc00::/7",
        "64:ff9b::/96",
    ):
        net = ipaddress.ip_network(network)
        first = net[1] if net.num_addresses > 1 else net.network_address
        assert webhooks.blocked_reason(first) is not None, network
    assert webhooks.blocked_reason(ipaddress.ip_address("93.184.216.34")) is None
    assert webhooks.blocked_reason(ipaddress.ip_address("2606:2800:220:1::1")) is None


def _run(status: RunStatus, **fields: object) -> RunRecord:
    at = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    base = RunRecord(
        run_id="01a25156-0000-7000-8000-000000000001",
        thread_id="t1",
        assistant_id="agent",
        status=status,
        multitask_strategy=MultitaskStrategy.enqueue,
        on_disconnect=DisconnectMode.continue_,
        metadata={"m": 1},
        kwargs={"input": {"x": 1}},
        result={"messages": ["hi"]},
        error=None,
        created_at=at,
        updated_at=at,
        started_at=at,
        ended_at=at,
        worker="w1",
        follow_up_to_run_id=None,
        user_id=None,
        abort_action=None,
        attempt=1,
    )
    return dataclasses.replace(base, **fields)


def test_the_body_has_the_reference_servers_fields() -> None:
    """langgraph_api.webhook.call_webhook posts the run, its status, start and end, when it
    was sent and its values; a failed run's error as {"error", "message"}."""
    sent = datetime(2026, 12, 7, 12, 1, tzinfo=UTC)
    body = webhooks.body(_run(RunStatus.success), sent)
    assert set(body) == {
        "run_id",
        "thread_id",
        "assistant_id",
        "created_at",
        "updated_at",
        "status",
        "metadata",
        "kwargs",
        "multitask_strategy",
        "run_started_at",
        "run_ended_at",
        "webhook_sent_at",
        "values",
    }
    assert body["status"] == "success" and body["values"] == {"messages": ["hi"]}
    assert body["webhook_sent_at"] == sent.isoformat()
    failed = webhooks.body(_run(RunStatus.error, error="ValueError: boom", result=None))
    assert failed["error"] == {"error": "ValueError", "message": "boom"}
    timed_out = webhooks.body(_run(RunStatus.timeout, error="over 5 s"))
    assert timed_out["error"] == {"error": "TimeoutError", "message": "over 5 s"}
    assert "error" not in webhooks.body(_run(RunStatus.interrupted))
    # A delayed run's created_at is its due time, as GET answers it (and the reference's).
    due = datetime(2026, 12, 7, 12, 0, 30, tzinfo=UTC)
    assert webhooks.body(_run(RunStatus.success, due_at=due))["created_at"] == due.isoformat()


def test_the_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    raw = b'{"run_id": "r"}'
    headers = webhooks.signed_headers("s3cret", "r", raw, now=1_700_000_000)
    assert headers[webhooks.DELIVERY_HEADER] == "r"
    assert headers[webhooks.TIMESTAMP_HEADER] == "1700000000"
    expected = hmac.new(b"s3cret", b"1700000000." + raw, hashlib.sha256).hexdigest()
    assert headers[webhooks.SIGNATURE_HEADER] == f"sha256={expected}"
    assert webhooks.verify("s3cret", headers, raw, now=1_700_000_100)
    assert not webhooks.verify("s3cret", headers, raw + b" ", now=1_700_000_100)  # tampered
    assert not webhooks.verify("other", headers, raw, now=1_700_000_100)
    assert not webhooks.verify("s3cret", headers, raw, now=1_700_000_000 + 301)  # replayed
    assert not webhooks.verify("s3cret", {}, raw)
    unsigned = webhooks.signed_headers("", "r", raw)
    assert webhooks.SIGNATURE_HEADER not in unsigned and unsigned[webhooks.DELIVERY_HEADER] == "r"


def test_the_backoff_doubles_up_to_its_cap() -> None:
    settings = Settings(webhook_backoff_initial=0.5, webhook_backoff_max=3.0)
    assert [backoff(settings, n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"webhook_timeout": 0}, "webhook_timeout"),
        ({"webhook_backoff_initial": -1}, "webhook_backoff_initial"),
        ({"webhook_retry_for": -1}, "webhook_retry_for"),
        ({"webhook_backoff_initial": 5, "webhook_backoff_max": 1}, "webhook_backoff_max"),
        ({"webhook_timeout": 30, "webhook_lease_seconds": 30}, "webhook_lease_seconds"),
        ({"webhook_poll_interval": 0}, "webhook_poll_interval"),
    ],
)
def test_webhook_settings_out_of_bounds_are_refused(overrides: dict, named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings(**overrides)


def test_webhook_settings_are_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "RUNQUEUE_WEBHOOK_SECRET": "k",
            "RUNQUEUE_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1,hooks.internal",
            "RUNQUEUE_WEBHOOK_RETRY_FOR": "60",
        }
    )
    assert settings.webhook_secret == "k" and settings.webhook_retry_for == 60.0
    assert webhooks.allowed_hosts(settings.webhook_allowed_hosts) == {"127.0.0.1", "hooks.internal"}


def test_the_documented_verification_snippet_accepts_a_signed_delivery() -> None:
    """docs/operations.md's receiver snippet, run as written, against our signature."""
    from tests.support import REPO_ROOT

    text = (REPO_ROOT / "docs" / "operations.md").read_text()
    webhooks_section = text.split("## Webhooks", 1)[1]
    snippet = webhooks_section.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict = {}
    exec(snippet, scope)  # noqa: S102 - the docs' own code
    raw = b'{"run_id": "r", "status": "success"}'
    headers = webhooks.signed_headers("k", "r", raw)
    assert scope["verify"]("k", headers, raw)
    assert not scope["verify"]("k", headers, raw.replace(b"success", b"error"))
    assert not scope["verify"]("other", headers, raw)
