"""API keys off: allowed only on loopback, both when `runqueue serve` starts and for every
request (an API served by another command, bound to a public address, refuses)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from starlette.requests import Request

from runqueue.api.users import check_auth_setting, current_user
from runqueue.errors import (
    AuthenticationError,
    CrossSiteRequestError,
    DuplicateApiKeyError,
    ForeignHostError,
    SettingsError,
)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_keys_may_be_off_on_loopback(host: str) -> None:
    check_auth_setting("off", host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "::ffff:127.0.0.1", "example.org"])
def test_keys_off_is_refused_elsewhere(host: str) -> None:
    with pytest.raises(SettingsError, match="loopback"):
        check_auth_setting("off", host)
    check_auth_setting("on", host)


def request_to(
    server: tuple[str, int], headers: dict[str, str] | None = None, host: str = "127.0.0.1:8123"
) -> Request:
    state = SimpleNamespace(runqueue=SimpleNamespace(auth_required=False))
    app = SimpleNamespace(state=state)
    raw = [(b"host", host.encode())] + [
        (name.lower().encode(), value.encode()) for name, value in (headers or {}).items()
    ]
    return Request({"type": "http", "app": app, "server": server, "headers": raw})


def test_keys_off_answers_only_requests_that_came_in_on_loopback() -> None:
    assert asyncio.run(current_user(request_to(("127.0.0.1", 8123)))) is None
    with pytest.raises(AuthenticationError, match="loopback"):
        asyncio.run(current_user(request_to(("10.1.2.3", 8123))))


@pytest.mark.parametrize(
    "host", ["localhost", "LocalHost:8123", "127.0.0.1", "127.8.9.10:80", "[::1]", "[::1]:8123"]
)
def test_keys_off_answers_a_loopback_host(host: str) -> None:
    assert asyncio.run(current_user(request_to(("127.0.0.1", 8123), host=host))) is None


@pytest.mark.parametrize(
    "host", ["", "evil.example", "evil.example:8123", "localhost.evil.example", "[::2]:80"]
)
def test_keys_off_refuses_a_foreign_host_421(host: str) -> None:
    with pytest.raises(ForeignHostError) as refused:
        asyncio.run(current_user(request_to(("127.0.0.1", 8123), host=host)))
    assert refused.value.http_status == 421


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "http://evil.example"},
        {"origin": "null"},
        {"origin": "http://localhost.evil.example:8123"},
        {"sec-fetch-site": "cross-site"},
        {"origin": "http://localhost:3000", "sec-fetch-site": "cross-site"},
    ],
)
def test_keys_off_refuses_another_sites_page_403(headers: dict[str, str]) -> None:
    with pytest.raises(CrossSiteRequestError) as refused:
        asyncio.run(current_user(request_to(("127.0.0.1", 8123), headers)))
    assert refused.value.http_status == 403


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "http://localhost:3000", "sec-fetch-site": "same-site"},
        {"origin": "https://127.0.0.1"},
        {"origin": "http://[::1]:8123"},
        {"sec-fetch-site": "none"},
    ],
)
def test_keys_off_answers_a_loopback_page(headers: dict[str, str]) -> None:
    assert asyncio.run(current_user(request_to(("127.0.0.1", 8123), headers))) is None


@pytest.mark.parametrize("auth_required", [True, False])
def test_two_api_keys_are_refused_400(auth_required: bool) -> None:
    request = request_to(("127.0.0.1", 8123), host="127.0.0.1")
    request.scope["headers"] += [(b"x-api-key", b"rq_a"), (b"x-api-key", b"rq_b")]
    request.app.state.runqueue.auth_required = auth_required
    with pytest.raises(DuplicateApiKeyError) as refused:
        asyncio.run(current_user(request))
    assert refused.value.http_status == 400
