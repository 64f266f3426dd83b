"""API keys off: allowed only on loopback, both when `runqueue serve` starts and for every
request (an API served by another command, bound to a public address, refuses)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from starlette.requests import Request

from runqueue.api.users import check_auth_setting, current_user
from runqueue.errors import AuthenticationError, SettingsError


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_keys_may_be_off_on_loopback(host: str) -> None:
    check_auth_setting("off", host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "::ffff:127.0.0.1", "example.org"])
def test_keys_off_is_refused_elsewhere(host: str) -> None:
    with pytest.raises(SettingsError, match="loopback"):
        check_auth_setting("off", host)
    check_auth_setting("on", host)


def request_to(server: tuple[str, int]) -> Request:
    state = SimpleNamespace(runqueue=SimpleNamespace(auth_required=False))
    app = SimpleNamespace(state=state)
    return Request({"type": "http", "app": app, "server": server, "headers": []})


def test_keys_off_answers_only_requests_that_came_in_on_loopback() -> None:
    assert asyncio.run(current_user(request_to(("127.0.0.1", 8123)), None)) is None
    with pytest.raises(AuthenticationError, match="loopback"):
        asyncio.run(current_user(request_to(("10.1.2.3", 8123)), None))
