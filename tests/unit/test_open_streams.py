"""The per-user bound on open streams (runqueue/api/open_streams.py): each user counted on
their own, the anonymous user of keys-off bound like any other, and a refusal that carries its
Retry-After."""

from __future__ import annotations

import pytest

from runqueue.api.open_streams import RETRY_AFTER_SECONDS, OpenStreams
from runqueue.errors import TooManyRequestsError


def test_each_user_holds_up_to_the_bound() -> None:
    streams = OpenStreams(max_per_user=2)
    streams.hold("alice")
    streams.hold("alice")
    with pytest.raises(TooManyRequestsError) as refused:
        streams.hold("alice")
    assert refused.value.http_status == 429
    assert refused.value.retry_after == RETRY_AFTER_SECONDS
    assert "too many open streams" in str(refused.value)
    streams.hold("bob")  # another user's count is their own
    assert (streams.held("alice"), streams.held("bob")) == (2, 1)
    streams.release("alice")
    streams.hold("alice")  # one closed: one more may open
    with pytest.raises(TooManyRequestsError):
        streams.hold("alice")


def test_with_keys_off_every_caller_is_one_bound_user() -> None:
    streams = OpenStreams(max_per_user=1)
    streams.hold(None)
    with pytest.raises(TooManyRequestsError):
        streams.hold(None)
    streams.release(None)
    assert streams.held(None) == 0
    streams.hold(None)
