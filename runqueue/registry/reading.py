"""Reading runs, their history and the fleet: one query each, no writes."""

from __future__ import annotations

from datetime import UTC, datetime

from runqueue import validation
from runqueue.records import (
    Checkpoint,
    RunEvent,
    RunRecord,
    RunStatus,
    ThreadRecord,
    WorkerRecord,
)
from runqueue.registry.base import RegistryBase
from runqueue.store import WebhookDeliveries
from runqueue.webhooks import WebhookDelivery


class RunReading(RegistryBase):
    """The registry's reads; a malformed id is refused before any query."""

    def webhook_delivery(self, run_id: str) -> WebhookDelivery | None:
        """The run's webhook delivery with its attempts; None until the run with a webhook
        is final (or for a run without one, or an unknown or malformed id)."""
        if not validation.is_run_id(run_id):
            return None
        return WebhookDeliveries(self.store).get(validation.run_id(run_id))

    def get(self, run_id: str, *, user_id: str | None = None) -> RunRecord | None:
        """The run; None for an unknown or malformed id, or another user's run."""
        if not validation.is_run_id(run_id):
            return None
        return self.queries.get(validation.run_id(run_id), validation.user_id(user_id))

    def list_by_thread(
        self,
        thread_id: str,
        *,
        user_id: str | None = None,
        status: RunStatus | str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[RunRecord]:
        """The thread's runs, newest first."""
        return self.queries.list_by_thread(
            validation.thread_id(thread_id),
            user_id=validation.user_id(user_id),
            status=validation.status(status) if status is not None else None,
            limit=limit,
            offset=offset,
        )

    def list_runs(
        self,
        *,
        thread_id: str | None = None,
        status: RunStatus | str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        return self.queries.list_runs(
            thread_id=validation.thread_id(thread_id) if thread_id is not None else None,
            status=validation.status(status) if status is not None else None,
            limit=validation.page_limit(limit),
        )

    def has_inflight(self, thread_id: str) -> bool:
        """True if the thread has a pending or running run."""
        return self.queries.has_inflight(validation.thread_id(thread_id))

    def count_inflight_of_user(self, user_id: str | None, *, up_to: int) -> int:
        """How many of the user's runs are pending or running (None: runs without a user),
        counted up to `up_to`: what a per-user bound asks."""
        return self.queries.count_inflight_of_user(validation.user_id(user_id), up_to)

    def events(self, run_id: str) -> list[RunEvent]:
        """The run's status transitions, oldest first."""
        return self.queries.events(validation.run_id(run_id))

    def workers(self) -> list[WorkerRecord]:
        """The live fleet: workers not stopped whose heartbeat is younger than a lease."""
        return self.store.live_workers(self.settings.lease_seconds)

    def why_pending(self, run_id: str) -> str | None:
        """Why a pending run has not started, in one sentence (for `runqueue show`); None if
        the run is not pending, or unknown."""
        run = self.get(run_id)
        if run is None or run.status is not RunStatus.pending:
            return None
        # A delayed run not due yet (this process's clock: a sentence, not a decision).
        delayed = run.due_at is not None and run.due_at > datetime.now(UTC)
        due = f"delayed until {run.due_at.isoformat()}" if delayed and run.due_at else None
        holder = self.store.thread_holder(run.run_id)
        if holder is not None:
            held = f"held behind run {holder[0]} ({holder[1]}) of its thread {run.thread_id}"
            return f"{held}; {due}" if due else held
        if due:
            return f"{due} (published when due)"
        live = self.workers()
        serving = [worker.name for worker in live if run.assistant_id in worker.assistants]
        last = self.events(run.run_id)[-1]
        if not serving:
            others = f" (live workers: {', '.join(w.name for w in live)})" if live else ""
            return f"no live worker serves assistant {run.assistant_id}{others}"
        lately = f"; last: {last.detail}" if last.detail not in (None, "queued", "held") else ""
        return (
            f"waiting for a worker: {len(serving)} live worker(s) serve assistant "
            f"{run.assistant_id} ({', '.join(serving)}){lately}"
        )

    def checkpoints(self, thread_id: str) -> list[Checkpoint]:
        return self.queries.checkpoints(validation.thread_id(thread_id))

    def threads(self, limit: int = 100) -> list[tuple[ThreadRecord, dict[str, int]]]:
        return self.queries.threads(validation.page_limit(limit))
