"""Threads on their own: created, read, searched, deleted with their runs and streams."""

from __future__ import annotations

import uuid
from typing import Any

from runqueue import validation
from runqueue.errors import InvalidPayloadError, StreamUnavailableError, ThreadNotFoundError
from runqueue.records import ThreadRecord, ThreadStatus, ThreadView
from runqueue.registry.base import RegistryBase, logger

THREAD_SORT_KEYS = ("thread_id", "status", "created_at", "updated_at")
MAX_PAGE = 2**31 - 1  # a larger limit or offset overflows the databases' integers


class ThreadRegistry(RegistryBase):
    """The thread methods; another user's thread reads as no thread."""

    def create_thread(
        self,
        thread_id: str | None = None,
        *,
        metadata: dict[str, Any] | None = None,
        if_exists: str = "raise",
        user_id: str | None = None,
    ) -> ThreadRecord:
        """A new thread (a UUID if no id is given). If it exists: ThreadExistsError
        (`raise`), or the existing thread (`do_nothing`) if it is this user's."""
        if if_exists not in ("raise", "do_nothing"):
            raise InvalidPayloadError(f"invalid if_exists {if_exists!r} (raise or do_nothing)")
        return self.store.create_thread(
            validation.thread_id(thread_id) if thread_id is not None else str(uuid.uuid4()),
            validation.user_id(user_id),
            self._json_object("metadata", metadata),
            if_exists=if_exists,
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

    def delete_thread(self, thread_id: str, *, user_id: str | None = None) -> None:
        """Delete the thread, its runs, their history and its graph state. ThreadBusyError
        while a run is in flight (cancel it first); ThreadNotFoundError if there is no such
        thread of this user's."""
        if not validation.is_thread_id(thread_id):
            raise ThreadNotFoundError(f"no thread {thread_id}")
        for run_id in self.store.delete_thread(thread_id, validation.user_id(user_id)):
            try:
                self.runtime.stream.delete(run_id)
            except StreamUnavailableError as exc:  # it expires on its own (ended: retention)
                logger.warning("run %s deleted; its stream is left to expire: %s", run_id, exc)
