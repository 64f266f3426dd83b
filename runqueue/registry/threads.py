"""Threads on their own: created, read, searched and counted, updated, copied, deleted or
pruned with their runs and streams."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from runqueue import validation
from runqueue.errors import InvalidPayloadError, StreamUnavailableError, ThreadNotFoundError
from runqueue.records import PruneStrategy, ThreadRecord, ThreadStatus, ThreadTtl, ThreadView
from runqueue.registry.base import RegistryBase, logger
from runqueue.store import PruneOutcome

THREAD_SORT_KEYS = ("thread_id", "status", "created_at", "updated_at")
MAX_PAGE = 2**31 - 1  # a larger limit or offset overflows the databases' integers
MAX_TTL_MINUTES = 100 * 365 * 24 * 60  # a century: any longer is "never"
MAX_PRUNE_THREADS = 1000  # thread ids one prune may name


def prune_strategy(value: Any) -> PruneStrategy:
    try:
        return PruneStrategy(value)
    except ValueError:
        choices = " or ".join(s.value for s in PruneStrategy)
        raise InvalidPayloadError(
            f"invalid strategy {validation.shown(value)} ({choices})"
        ) from None


def thread_ttl(value: ThreadTtl | Mapping[str, Any] | float | None) -> ThreadTtl | None:
    """A thread's ttl as callers give it: a ThreadTtl, minutes (strategy `delete`, as the
    SDK sends a number), or the API's {"strategy", "ttl"} (minutes; no `ttl`: none)."""
    if value is None or isinstance(value, ThreadTtl):
        minutes, strategy = (value.minutes, value.strategy) if value else (None, None)
    elif isinstance(value, Mapping):
        unknown = sorted(set(value) - {"strategy", "ttl"})
        if unknown:
            raise InvalidPayloadError(f"ttl has no field {unknown[0]!r} (strategy, ttl)")
        minutes, strategy = value.get("ttl"), value.get("strategy", PruneStrategy.delete)
    else:
        minutes, strategy = value, PruneStrategy.delete
    if minutes is None:
        return None
    if isinstance(minutes, bool) or not isinstance(minutes, int | float):
        raise InvalidPayloadError(
            f"ttl must be a number of minutes, not {validation.shown(minutes)}"
        )
    if not (math.isfinite(minutes) and 0 <= minutes <= MAX_TTL_MINUTES):
        raise InvalidPayloadError(f"ttl must be between 0 and {MAX_TTL_MINUTES} minutes")
    return ThreadTtl(prune_strategy(strategy), float(minutes))


class ThreadRegistry(RegistryBase):
    """The thread methods; another user's thread reads as no thread."""

    def create_thread(
        self,
        thread_id: str | None = None,
        *,
        metadata: dict[str, Any] | None = None,
        if_exists: str = "raise",
        user_id: str | None = None,
        ttl: ThreadTtl | Mapping[str, Any] | float | None = None,
    ) -> ThreadRecord:
        """A new thread (a UUID if no id is given). If it exists: ThreadExistsError
        (`raise`), or the existing thread (`do_nothing`) if it is this user's. `ttl`: once
        idle that many minutes the maintenance pass prunes it (thread_ttl())."""
        if if_exists not in ("raise", "do_nothing"):
            raise InvalidPayloadError(f"invalid if_exists {if_exists!r} (raise or do_nothing)")
        return self.store.create_thread(
            validation.thread_id(thread_id) if thread_id is not None else str(uuid.uuid4()),
            validation.user_id(user_id),
            self._json_object("metadata", metadata),
            if_exists=if_exists,
            ttl=thread_ttl(ttl),
        )

    def _json_object(self, name: str, value: Any) -> dict[str, Any]:
        """A JSON object argument within this app's size and nesting limits."""
        settings = self.settings
        return validation.json_object(
            name, value, settings.max_payload_bytes, settings.max_json_depth
        )

    def get_thread(self, thread_id: str, *, user_id: str | None = None) -> ThreadView | None:
        """The thread with its status; None if unknown, malformed, or another user's."""
        if not validation.is_thread_id(thread_id):
            return None
        return self.store.get_thread(thread_id, validation.user_id(user_id))

    def search_threads(
        self,
        *,
        user_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        ids: list[str] | None = None,
        status: ThreadStatus | str | None = None,
        limit: int = 10,
        offset: int = 0,
        sort_by: str = "created_at",
        sort_order: str = "desc",
    ) -> list[ThreadView]:
        """Threads whose metadata contains `metadata`, among `ids`, in `status`; newest
        first unless `sort_by` (thread_id, status, created_at, updated_at) and `sort_order`
        (asc, desc) say otherwise."""
        if not (0 <= limit <= MAX_PAGE and 0 <= offset <= MAX_PAGE):
            raise InvalidPayloadError(f"limit and offset must be between 0 and {MAX_PAGE}")
        if sort_by not in THREAD_SORT_KEYS or sort_order not in ("asc", "desc"):
            raise InvalidPayloadError(
                f"sort_by must be one of {', '.join(THREAD_SORT_KEYS)}, sort_order asc or desc"
            )
        return self.store.search_threads(
            user_id=validation.user_id(user_id),
            metadata=self._json_object("metadata", metadata),
            ids=[i for i in ids if validation.is_thread_id(i)] if ids is not None else None,
            status=validation.thread_status(status) if status is not None else None,
            limit=limit,
            offset=offset,
            sort_by=sort_by,
            descending=sort_order == "desc",
        )

    def count_threads(
        self,
        *,
        user_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        status: ThreadStatus | str | None = None,
    ) -> int:
        """How many threads search_threads() finds with these filters."""
        return self.store.count_threads(
            user_id=validation.user_id(user_id),
            metadata=self._json_object("metadata", metadata),
            status=validation.thread_status(status) if status is not None else None,
        )

    def patch_thread(
        self,
        thread_id: str,
        *,
        metadata: dict[str, Any] | None = None,
        ttl: ThreadTtl | Mapping[str, Any] | float | None = None,
        user_id: str | None = None,
    ) -> ThreadRecord:
        """Merge `metadata` into the thread's (its top-level keys replace the thread's), set
        its ttl if given, and touch its updated_at. ThreadNotFoundError if there is no such
        thread of this user's."""
        patched = None
        if validation.is_thread_id(thread_id):
            patched = self.store.patch_thread(
                thread_id,
                validation.user_id(user_id),
                self._json_object("metadata", metadata),
                thread_ttl(ttl),
            )
        if patched is None:
            raise ThreadNotFoundError(f"thread {thread_id} not found")
        return patched

    def copy_thread(self, thread_id: str, *, user_id: str | None = None) -> ThreadRecord:
        """A new thread (a UUID) with this one's metadata, state and history, and no runs.
        ThreadNotFoundError if there is no such thread of this user's; ThreadBusyError while
        a run of it is in flight."""
        if not validation.is_thread_id(thread_id):
            raise ThreadNotFoundError(f"thread {thread_id} not found")
        copy = self.store.copy_thread(thread_id, str(uuid.uuid4()), validation.user_id(user_id))
        logger.info(
            "thread %s copied to %s",
            thread_id,
            copy.thread_id,
            extra={"thread_id": copy.thread_id, "action": "thread_copied"},
        )
        return copy

    def prune_threads(
        self,
        thread_ids: Iterable[str],
        *,
        strategy: PruneStrategy | str = PruneStrategy.delete,
        user_id: str | None = None,
    ) -> int:
        """Prune these threads: delete them (`delete`), or keep each with its latest
        checkpoint only (`keep_latest`); each in a transaction of its own. A thread with a
        run in flight, unknown or another user's is left out. How many were pruned."""
        if isinstance(thread_ids, str):  # its characters would be taken for thread ids
            raise InvalidPayloadError("thread_ids must be a list of thread ids, not one string")
        strategy = prune_strategy(strategy)
        ids = list(dict.fromkeys(validation.thread_id(i) for i in thread_ids))
        if len(ids) > MAX_PRUNE_THREADS:
            raise InvalidPayloadError(f"at most {MAX_PRUNE_THREADS} thread ids per prune")
        user_id = validation.user_id(user_id)
        pruned = 0
        for thread_id in ids:
            outcome = self.store.prune_thread(thread_id, strategy, user_id)
            self._forget_streams(outcome.run_ids)
            if outcome.outcome is PruneOutcome.pruned:
                pruned += 1
                logger.info(  # as the sweep and a copy log theirs: a deletion leaves a line
                    "thread %s pruned (%s), %d runs deleted",
                    thread_id,
                    strategy.value,
                    len(outcome.run_ids),
                    extra={"thread_id": thread_id, "action": "thread_pruned"},
                )
        return pruned

    def delete_thread(self, thread_id: str, *, user_id: str | None = None) -> None:
        """Delete the thread, its runs, their history and its graph state. ThreadBusyError
        while a run is in flight (cancel it first); ThreadNotFoundError if there is no such
        thread of this user's."""
        if not validation.is_thread_id(thread_id):
            raise ThreadNotFoundError(f"no thread {thread_id}")
        self._forget_streams(self.store.delete_thread(thread_id, validation.user_id(user_id)))

    def _forget_streams(self, run_ids: list[str]) -> None:
        """Delete the streams of runs just deleted."""
        for run_id in run_ids:
            try:
                self.runtime.stream.delete(run_id)
            except StreamUnavailableError as exc:  # it expires on its own (ended: retention)
                logger.warning("run %s deleted; its stream is left to expire: %s", run_id, exc)
