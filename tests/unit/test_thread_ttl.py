"""A thread's ttl as callers give it (the SDK's minutes, the API's {strategy, ttl}, a
ThreadTtl), refused when malformed; and the strategies' one place: PruneStrategy, which the
model's CHECK, migration 0010 and the API's schema all take from."""

from __future__ import annotations

import importlib.util
import math

import pytest
from pydantic import ValidationError

from runqueue import (
    InvalidPayloadError,
    PruneStrategy,
    Settings,
    SyncRunManager,
    ThreadTtl,
    create_app,
)
from runqueue.api.schemas import ThreadCreate
from runqueue.api.thread_schemas import ThreadPrune
from runqueue.registry.threads import MAX_TTL_MINUTES, prune_strategy, thread_ttl
from runqueue.store.models import TTL_STRATEGIES
from tests.support import REPO_ROOT

MIGRATION = REPO_ROOT / "runqueue/store/migrations/versions/0010_thread_retention.py"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, None),
        (30, ThreadTtl(PruneStrategy.delete, 30.0)),  # the SDK's number: minutes, delete
        (0.5, ThreadTtl(PruneStrategy.delete, 0.5)),
        ({"ttl": 2, "strategy": "keep_latest"}, ThreadTtl(PruneStrategy.keep_latest, 2.0)),
        ({"ttl": 2}, ThreadTtl(PruneStrategy.delete, 2.0)),
        ({"strategy": "keep_latest"}, None),  # no minutes: no ttl
        ({"ttl": None}, None),
        (ThreadTtl(PruneStrategy.keep_latest, 1.0), ThreadTtl(PruneStrategy.keep_latest, 1.0)),
    ],
)
def test_a_ttl_as_callers_give_it(given, expected):
    assert thread_ttl(given) == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (-1, "between 0 and"),
        (MAX_TTL_MINUTES + 1, "between 0 and"),
        (math.inf, "between 0 and"),
        (math.nan, "between 0 and"),
        (True, "a number of minutes"),
        ("60", "a number of minutes"),
        ({"ttl": "soon"}, "a number of minutes"),
        ({"ttl": 1, "strategy": "archive"}, "invalid strategy 'archive'"),
        ({"ttl": 1, "when": "now"}, "no field 'when'"),
    ],
)
def test_a_malformed_ttl_is_refused_with_a_sentence(given, message):
    with pytest.raises(InvalidPayloadError, match=message):
        thread_ttl(given)


def test_prune_refuses_one_string_for_its_list_of_ids(tmp_path):
    manager = SyncRunManager(create_app(Settings(data_dir=tmp_path)))
    with pytest.raises(InvalidPayloadError, match="not one string"):
        manager.prune_threads("t1")  # would be read as the threads "t" and "1"


def test_the_strategies_come_from_one_enum():
    values = [strategy.value for strategy in PruneStrategy]
    assert values == ["delete", "keep_latest"]
    assert prune_strategy("keep_latest") is PruneStrategy.keep_latest
    spec = importlib.util.spec_from_file_location("migration_0010", MIGRATION)
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    assert migration.TTL_STRATEGIES == TTL_STRATEGIES  # the CHECK the database enforces
    assert ThreadCreate(ttl={"strategy": "keep_latest", "ttl": 1}).ttl.strategy == "keep_latest"
    for strategy in values:
        assert ThreadPrune(thread_ids=[], strategy=strategy).strategy == strategy
    with pytest.raises(ValidationError):
        ThreadPrune(thread_ids=[], strategy="archive")
    with pytest.raises(ValidationError):
        ThreadCreate(ttl={"ttl": math.inf})
