"""Waiting for a run: join() until its end, stream() its events live; both woken by the run's
stream, not by polling the database."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from runqueue import validation
from runqueue.errors import RunNotFoundError
from runqueue.records import RunRecord, StreamEvent
from runqueue.registry.base import RegistryBase


class RunJoining(RegistryBase):
    """The sync waits; RunManager's async twins share _run_of()."""

    def join(self, run_id: str, *, timeout: float = 60.0) -> RunRecord:
        """Wait until the run reaches a final status; TimeoutError if it does not in time.
        Woken by the `end` of the run's stream, not by polling the database."""
        run_id = validation.run_id(run_id)
        return self.runtime.stream.wait_for_end(run_id, self._run_of(run_id), timeout)

    def stream(self, run_id: str, *, after: str | int | None = None) -> Iterator[StreamEvent]:
        """The run's events after `after` (an event id; None: from the first), live, through
        its `end`. RunNotFoundError if there is no such run."""
        run_id = validation.run_id(run_id)
        run_of = self._run_of(run_id)
        run_of()  # no such run: say so now, not at the first silence
        return self.runtime.stream.follow(run_id, after, run_of)

    def _run_of(self, run_id: str) -> Callable[[], RunRecord]:
        """Reads the run from the database; RunNotFoundError if it was never there (or was
        deleted)."""

        def run_of() -> RunRecord:
            run = self.queries.get(run_id, None)
            if run is None:
                raise RunNotFoundError(f"no run {run_id}")
            return run

        return run_of
