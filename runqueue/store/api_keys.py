"""HTTP API keys: `rq_<key_id>_<secret>`, of which only a SHA-256 is stored.

The secret is 32 random bytes, so a plain SHA-256 is enough (a slow password hash guards
guessable secrets; these are not). Every request reads the key's row: a revoked key is
refused at once by every API process, with no cache to expire.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from sqlalchemy import insert, select, update

from runqueue.records import ApiKeyRecord
from runqueue.store.models import ApiKey
from runqueue.store.rows import aware
from runqueue.store.transactions import StoreBase, db_now

KEY_PATTERN = re.compile(r"rq_([0-9a-f]{16})_[A-Za-z0-9_-]{43}")  # fullmatch


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeyStatements(StoreBase):
    """Creating, listing, revoking and checking API keys."""

    def create_api_key(self, user_id: str) -> tuple[ApiKeyRecord, str]:
        """A new key for `user_id`: its record, and the key itself (shown once, kept nowhere)."""
        key_id = secrets.token_hex(8)
        key = f"rq_{key_id}_{secrets.token_urlsafe(32)}"
        with self.transaction() as conn:
            created_at = conn.execute(
                insert(ApiKey)
                .values(key_id=key_id, user_id=user_id, key_hash=_digest(key), created_at=db_now())
                .returning(ApiKey.created_at)
            ).scalar_one()
        return ApiKeyRecord(key_id, user_id, aware(created_at), None), key

    def list_api_keys(self) -> list[ApiKeyRecord]:
        query = select(ApiKey.key_id, ApiKey.user_id, ApiKey.created_at, ApiKey.revoked_at)
        with self.reading() as conn:
            rows = conn.execute(query.order_by(ApiKey.created_at, ApiKey.key_id)).all()
        return [
            ApiKeyRecord(row.key_id, row.user_id, aware(row.created_at), aware(row.revoked_at))
            for row in rows
        ]

    def revoke_api_key(self, key_id: str) -> bool:
        """False if there is no such key, or it was already revoked."""
        with self.transaction() as conn:
            revoked = conn.execute(
                update(ApiKey)
                .where(ApiKey.key_id == key_id, ApiKey.revoked_at.is_(None))
                .values(revoked_at=db_now())
            ).rowcount
        return revoked == 1

    def user_of_api_key(self, key: str) -> str | None:
        """The user a valid, unrevoked key speaks for; None for any other string."""
        match = KEY_PATTERN.fullmatch(key)
        if match is None:
            return None
        query = select(ApiKey.user_id, ApiKey.key_hash).where(
            ApiKey.key_id == match.group(1), ApiKey.revoked_at.is_(None)
        )
        with self.reading() as conn:
            row = conn.execute(query).first()
        if row is None or not hmac.compare_digest(row.key_hash, _digest(key)):
            return None
        return row.user_id
