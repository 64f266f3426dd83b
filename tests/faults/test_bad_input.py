"""The bad-input table, one test per row: each gets a typed error and the database is
unchanged (row counts of runs, threads, run_events and checkpoints)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import text

from runqueue import RunRequest, SyncRunManager, create_app
from runqueue.errors import (
    InvalidPayloadError,
    InvalidRunIdError,
    RunQueueError,
    UnknownAssistantError,
    UnsupportedStrategyError,
)
from tests.conftest import require_services
from tests.faults import faultkit
from tests.support import REDIS_HOST, REDIS_PORT, create_database, drop_database
from workers.assistants import register

TABLES = ("runs", "threads", "run_events", "checkpoints")
SMALL_LIMIT = 1024  # a configured max_payload_bytes, far below the 1 MiB default
SQL = "x'); DROP TABLE runs; --"
QUOTES = 'it\'s "quoted" `back` \\ ; --'


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    require_services()
    database_url = create_database(prefix="runqueue_fault")
    backend = faultkit.fault_backend(
        tmp_path_factory.mktemp("bad-input"),
        database_url,
        f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
    )
    manager = faultkit.manager_for(backend.settings)
    manager.create_or_reject("existing-thread", "echo")  # something to leave untouched
    yield manager
    drop_database(database_url)


def row_counts(manager: Any) -> dict[str, int]:
    with manager.store.transaction() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in TABLES}


def small_limit(manager: Any) -> Any:
    return faultkit.manager_for(manager.settings.with_overrides(max_payload_bytes=SMALL_LIMIT))


def shallow(manager: Any) -> Any:
    """A manager whose app allows JSON 5 levels deep (max_json_depth)."""
    return faultkit.manager_for(manager.settings.with_overrides(max_json_depth=5))


def default_install(manager: Any) -> Any:
    """A manager whose app registers the example assistants as workers.app does with
    RUNQUEUE_IMPORTS unset: no test-only `journal` option."""
    app = create_app(manager.settings.with_overrides(imports=""), name="bad-input-default")
    register(app)
    return SyncRunManager(app)


def nested(depth: int, leaf: Any = 1, container: type = dict) -> Any:
    """A value `depth` objects (or arrays) deep: what an attacker posts to break pickling (the
    worker's hand-off, ~420 levels), serializers and json itself."""
    value = leaf
    for _ in range(depth):
        value = {"a": value} if container is dict else [value]
    return value


ROWS: dict[str, tuple[type[RunQueueError], Callable[[Any], Any]]] = {
    "unknown-strategy": (
        UnsupportedStrategyError,
        lambda m: m.create_or_reject("t1", "echo", multitask_strategy="merge"),
    ),
    "strategy-with-sql": (
        UnsupportedStrategyError,
        lambda m: m.create_or_reject("t1", "echo", multitask_strategy=SQL),
    ),
    "unknown-assistant": (UnknownAssistantError, lambda m: m.create_or_reject("t1", "nope")),
    "assistant-with-sql": (UnknownAssistantError, lambda m: m.create_or_reject("t1", SQL)),
    "no-assistant-no-default": (UnknownAssistantError, lambda m: m.create_or_reject("t1")),
    "kwargs-not-json": (
        InvalidPayloadError,
        lambda m: m.create_or_reject("t1", "echo", kwargs={"when": object()}),
    ),
    "kwargs-not-an-object": (
        InvalidPayloadError,
        lambda m: m.create_or_reject("t1", "echo", kwargs=["a", "list"]),
    ),
    "metadata-not-json": (
        InvalidPayloadError,
        lambda m: m.create_or_reject("t1", "echo", metadata={"set": {1, 2}}),
    ),
    "metadata-bytes": (
        InvalidPayloadError,
        lambda m: m.create_or_reject("t1", "echo", metadata={"raw": b"\x00\x01"}),
    ),
    "kwargs-over-configured-limit": (
        InvalidPayloadError,
        lambda m: small_limit(m).create_or_reject("t1", "echo", kwargs={"x": "a" * SMALL_LIMIT}),
    ),
    "metadata-over-configured-limit": (
        InvalidPayloadError,
        lambda m: small_limit(m).create_or_reject("t1", "echo", metadata={"x": "a" * SMALL_LIMIT}),
    ),
    "kwargs-over-default-1mib": (
        InvalidPayloadError,
        lambda m: m.create_or_reject("t1", "echo", kwargs={"x": "a" * (1024 * 1024)}),
    ),
    "kwargs-nan": (
        InvalidPayloadError,
        lambda m: m.create_or_reject("t1", "echo", kwargs={"x": math.nan}),
    ),
    "kwargs-infinity": (
        InvalidPayloadError,
        lambda m: m.create_or_reject("t1", "echo", kwargs={"x": math.inf}),
    ),
    "metadata-negative-infinity": (
        InvalidPayloadError,
        lambda m: m.create_or_reject("t1", "echo", metadata={"nested": [1, -math.inf]}),
    ),
    "kwargs-nul-character": (
        InvalidPayloadError,
        lambda m: m.create_or_reject("t1", "echo", kwargs={"x": "a\x00b"}),
    ),
    "on-disconnect-unknown": (
        InvalidPayloadError,
        lambda m: m.create_or_reject("t1", "echo", on_disconnect="explode"),
    ),
    "thread-id-empty": (InvalidRunIdError, lambda m: m.create_or_reject("", "echo")),
    "thread-id-spaces": (InvalidRunIdError, lambda m: m.create_or_reject("a thread", "echo")),
    "thread-id-too-long": (InvalidRunIdError, lambda m: m.create_or_reject("t" * 129, "echo")),
    "thread-id-not-a-string": (InvalidRunIdError, lambda m: m.create_or_reject(42, "echo")),
    "thread-id-none": (InvalidRunIdError, lambda m: m.create_or_reject(None, "echo")),
    "thread-id-sql": (InvalidRunIdError, lambda m: m.create_or_reject(SQL, "echo")),
    "thread-id-quotes": (InvalidRunIdError, lambda m: m.create_or_reject(QUOTES, "echo")),
    "thread-id-path": (InvalidRunIdError, lambda m: m.create_or_reject("../../etc", "echo")),
    "follow-up-run-id-malformed": (
        InvalidRunIdError,
        lambda m: m.create_or_reject("t1", "echo", follow_up_to_run_id="not-a-uuid"),
    ),
    "cancel-action-unknown": (
        InvalidPayloadError,
        lambda m: m.cancel("0193f0c2-1d2e-7a3b-8c4d-5e6f708192a3", action="explode"),
    ),
    "set-status-run-id-quotes": (InvalidRunIdError, lambda m: m.set_status(QUOTES, "success")),
    # Issue 23, item 1: what cannot be carried is refused before anything is written.
    "kwargs-600-deep": (
        InvalidPayloadError,
        lambda m: m.create_or_reject("t1", "echo", kwargs={"x": nested(600)}),
    ),
    "kwargs-10000-deep": (
        InvalidPayloadError,
        lambda m: m.create_or_reject("t1", "echo", kwargs={"x": nested(10_000)}),
    ),
    "kwargs-arrays-600-deep": (
        InvalidPayloadError,
        lambda m: m.create_or_reject("t1", "echo", kwargs={"x": nested(600, container=list)}),
    ),
    "kwargs-over-configured-depth": (
        InvalidPayloadError,
        lambda m: shallow(m).create_or_reject("t1", "echo", kwargs={"x": nested(5)}),
    ),
    "metadata-900-deep": (
        InvalidPayloadError,
        lambda m: m.create_or_reject("t1", "echo", metadata={"x": nested(900)}),
    ),
    "kwargs-huge-integer": (
        InvalidPayloadError,
        lambda m: m.create_or_reject("t1", "echo", kwargs={"x": 10**5000}),
    ),
    "bulk-kwargs-600-deep": (
        InvalidPayloadError,
        lambda m: m.create_many([RunRequest("t1", "echo", kwargs={"x": nested(600)})]),
    ),
    # Item 2: a default install does not offer the test-only file-writing option.
    "journal-on-a-default-install": (
        InvalidPayloadError,
        lambda m: default_install(m).create_or_reject(
            "t1", "echo", kwargs={"journal": "written-by-bob.txt"}
        ),
    ),
    # Item 3: deep thread metadata and search filters.
    "thread-metadata-900-deep": (
        InvalidPayloadError,
        lambda m: m.create_thread("t-deep", metadata={"x": nested(900)}),
    ),
    "thread-search-metadata-900-deep": (
        InvalidPayloadError,
        lambda m: m.search_threads(metadata={"x": nested(900)}),
    ),
    # Item 4: a final newline is no part of an id.
    "thread-id-trailing-newline": (InvalidRunIdError, lambda m: m.create_or_reject("t\n", "echo")),
    "thread-id-128-and-newline": (
        InvalidRunIdError,
        lambda m: m.create_or_reject("t" * 128 + "\n", "echo"),
    ),
    "create-thread-id-trailing-newline": (InvalidRunIdError, lambda m: m.create_thread("t\n")),
    "user-id-newline": (
        InvalidRunIdError,
        lambda m: m.create_or_reject("t1", "echo", user_id="alice\n"),
    ),
    "follow-up-run-id-newline": (
        InvalidRunIdError,
        lambda m: m.create_or_reject(
            "t1", "echo", follow_up_to_run_id="0193f0c2-1d2e-7a3b-8c4d-5e6f708192a3\n"
        ),
    ),
    "user-id-too-long": (
        InvalidRunIdError,
        lambda m: m.create_or_reject("t1", "echo", user_id="u" * 129),
    ),
}


@pytest.mark.parametrize("row", list(ROWS))
def test_bad_input_is_a_typed_error_and_changes_nothing(row: str, manager: Any) -> None:
    error, call = ROWS[row]
    before = row_counts(manager)
    with pytest.raises(error) as raised:
        call(manager)
    assert str(raised.value)  # a sentence a person can read
    assert row_counts(manager) == before


@pytest.mark.parametrize("run_id", [SQL, "1 OR 1=1", QUOTES, "", "0193f0c2"])
def test_a_malformed_run_id_reads_as_not_found_like_the_in_memory_registry(
    run_id: str, manager: Any
) -> None:
    """The registry it replaces answers get() None and cancel() False for any unknown id,
    well-formed or not; so does runqueue, and nothing changes."""
    before = row_counts(manager)
    assert manager.get(run_id) is None
    assert manager.cancel(run_id) is False
    assert row_counts(manager) == before


def test_quotes_and_sql_inside_payloads_are_stored_verbatim(manager: Any) -> None:
    """Not bad input: JSON values are data, bound as parameters, never spliced into SQL."""
    before = row_counts(manager)
    payload = {"prompt": SQL, "quotes": QUOTES, "unicode": "\u00e9\u2603\U0001f600"}
    run = manager.create_or_reject("t-payload", "echo", kwargs=payload, metadata=payload)
    stored = manager.get(run.run_id)
    assert stored.kwargs == payload and stored.metadata == payload
    after = row_counts(manager)
    assert after["runs"] == before["runs"] + 1 and after["threads"] == before["threads"] + 1


def test_bad_input_table_figure(manager: Any, report: Callable[..., str]) -> None:
    """Every row once more, in one pass, for the figure line of docs/reliability.md."""
    before = row_counts(manager)
    typed = 0
    for error, call in ROWS.values():
        try:
            call(manager)
        except error:
            typed += 1
    changed = sum(abs(row_counts(manager)[t] - before[t]) for t in TABLES)
    report("bad-input", rows=len(ROWS), typed_errors=typed, rows_changed=changed)
    assert typed == len(ROWS) and changed == 0
