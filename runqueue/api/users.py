"""Who is calling: an API key in `x-api-key` (the header langgraph-sdk sends) names a user.

Keys are checked against the database on every request, so a revoked key is refused at once
by every API process. With RUNQUEUE_API_AUTH=off (loopback only) every caller is the same
anonymous user, who sees every thread.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Annotated

from fastapi import Depends, Header, Request

from runqueue.errors import AuthenticationError, SettingsError
from runqueue.records import ApiKeyRecord
from runqueue.store.decisions import RunStore
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


async def current_user(
    request: Request, x_api_key: str | None = Header(default=None, include_in_schema=False)
) -> str | None:
    """The caller's user id (None with auth off); AuthenticationError (401) otherwise."""
    state = request.app.state.runqueue
    if not state.auth_required:
        server = request.scope.get("server")
        if server is not None and not is_loopback(server[0]):  # served by another command
            raise AuthenticationError(
                "API keys are off (RUNQUEUE_API_AUTH=off), which is allowed on loopback only"
            )
        return None
    if not x_api_key:
        raise AuthenticationError("missing API key: send it in the x-api-key header")
    user = await asyncio.to_thread(state.keys.user_of, x_api_key)
    if user is None:
        raise AuthenticationError("invalid or revoked API key")
    return user


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
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
