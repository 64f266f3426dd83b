"""Who is calling: an API key in `x-api-key` (the header langgraph-sdk sends) names a user.

Keys are checked against the database on every request, so a revoked key is refused at once
by every API process. With RUNQUEUE_API_AUTH=off (loopback only) every caller is the same
anonymous user, who sees every thread.

Loopback alone does not keep a browser out: any page the user opens can send requests to
127.0.0.1 (a simple cross-site POST needs no preflight), and a DNS-rebinding page can read
the answers under its own host name. So with keys off, a request must name a loopback host
(`Host`, else 421) and must not come from another site's page (a non-loopback `Origin`, or
`Sec-Fetch-Site: cross-site`, else 403).
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request

from runqueue.errors import (
    AuthenticationError,
    CrossSiteRequestError,
    DuplicateApiKeyError,
    ForeignHostError,
    SettingsError,
)
from runqueue.records import ApiKeyRecord
from runqueue.store import RunStore
from runqueue.validation import user_id as checked_user_id


class ApiKeys:
    """Creating, listing and revoking keys: what `runqueue api-key` calls."""

    def __init__(self, store: RunStore):
        self.store = store

    def create(self, user_id: str) -> tuple[ApiKeyRecord, str]:
        """A new key for the user: its record, and the key itself (shown once)."""
        user = checked_user_id(user_id)
        assert user is not None
        return self.store.create_api_key(user)

    def list(self) -> list[ApiKeyRecord]:
        return self.store.list_api_keys()

    def revoke(self, key_id: str) -> bool:
        return self.store.revoke_api_key(key_id)

    def user_of(self, key: str) -> str | None:
        return self.store.user_of_api_key(key)


async def current_user(request: Request) -> str | None:
    """The caller's user id (None with auth off): AuthenticationError (401) without a valid
    key, DuplicateApiKeyError (400) for two keys; with keys off, check_local_caller's."""
    state = request.app.state.runqueue
    keys = request.headers.getlist("x-api-key")
    if len(keys) > 1:  # which one would count is a guess: refuse rather than pick
        raise DuplicateApiKeyError()
    if not state.auth_required:
        server = request.scope.get("server")
        if server is not None and not is_loopback(server[0]):  # served by another command
            raise AuthenticationError(
                "API keys are off (RUNQUEUE_API_AUTH=off), which is allowed on loopback only"
            )
        check_local_caller(request)
        return None
    if not keys or not keys[0]:
        raise AuthenticationError("missing API key: send it in the x-api-key header")
    user = await asyncio.to_thread(state.keys.user_of, keys[0])
    if user is None:
        raise AuthenticationError("invalid or revoked API key")
    return user


def check_local_caller(request: Request) -> None:
    """With keys off: ForeignHostError unless the request names a loopback host, and
    CrossSiteRequestError if a browser sent it from another site's page (see the module)."""
    host = request.headers.get("host", "")
    if not is_loopback(_host_name(host)):
        raise ForeignHostError(
            f"Host {host!r} is not a loopback name: with API keys off "
            "(RUNQUEUE_API_AUTH=off) only localhost, 127.x.x.x and [::1] are answered"
        )
    origin = request.headers.get("origin")
    if origin is not None and not is_loopback(urlsplit(origin).hostname or ""):
        raise CrossSiteRequestError(
            f"requests from {origin!r} are refused: with API keys off "
            "(RUNQUEUE_API_AUTH=off) only pages on a loopback address may call the API"
        )
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise CrossSiteRequestError(
            "cross-site requests are refused: with API keys off (RUNQUEUE_API_AUTH=off) "
            "only pages on a loopback address may call the API"
        )


def _host_name(host: str) -> str:
    """The name in a Host header, without its port: `[::1]:8123` -> `::1`."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        return host.partition(":")[0]
    return host


User = Annotated[str | None, Depends(current_user)]  # a handler's parameter: who calls


def check_auth_setting(auth: str, host: str) -> None:
    """Keys may be switched off only on a loopback address: anyone else could reach it."""
    if auth == "off" and not is_loopback(host):
        raise SettingsError(
            f"RUNQUEUE_API_AUTH=off is refused on {host}, which is not a loopback address: "
            "serve on 127.0.0.1 (or ::1, localhost), or create API keys with "
            "`runqueue api-key create USER`"
        )


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
