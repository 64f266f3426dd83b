"""runqueue/worker/pool_stop.py copies three bodies of billiard's pool with only their waits
changed. If billiard (pinned in constraints.txt) changes one of them, this test names it, so
the copy is read again against the new original rather than drifting from it unseen."""

from __future__ import annotations

import hashlib
import inspect

import pytest
from billiard.pool import Pool, Supervisor, TimeoutHandler

# sha256 of inspect.getsource() of each original, billiard 4.3.2, first 16 hex digits.
COPIED = {
    "Supervisor.body": (Supervisor.body, "ec928e45b9cd4202"),
    "TimeoutHandler.body": (TimeoutHandler.body, "3e651989d2cafaae"),
    "Pool._help_stuff_finish": (Pool._help_stuff_finish, "14190e64ebe1357a"),
}


@pytest.mark.parametrize("name", sorted(COPIED))
def test_billiards_original_is_the_one_pool_stop_copied(name: str) -> None:
    original, fingerprint = COPIED[name]
    source = inspect.getsource(original).encode()
    assert hashlib.sha256(source).hexdigest()[:16] == fingerprint, (
        f"billiard's {name} changed: compare runqueue/worker/pool_stop.py's copy with it"
    )
