"""The journal: JSON lines in which the example assistants record what really executed.

Each line is one event of one run: `{"run_id", "thread_id", "pid", "event", "time", ...}`
(events `start`, `step`, `end`). The demo and the tests judge every guarantee from these side
effects (which process ran a run, when, in what order), never from runqueue's own status
column alone.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def record(
    path: str | os.PathLike[str], *, run_id: str, thread_id: str, event: str, **fields: Any
) -> None:
    """Append one line for this process, on disk before returning (a SIGKILL loses nothing)."""
    line = {
        "run_id": run_id,
        "thread_id": thread_id,
        "pid": os.getpid(),
        "event": event,
        "time": time.time(),
        **fields,
    }
    with Path(path).open("a") as handle:
        handle.write(json.dumps(line) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


@dataclass(frozen=True)
class Journal:
    """One journal file, read fresh on every call. `str(journal)` is its path, the value an
    assistant's `journal` keyword argument takes."""

    path: Path

    def __str__(self) -> str:
        return str(self.path)

    def __fspath__(self) -> str:
        return str(self.path)

    def lines(
        self, *, run_id: str | None = None, event: str | None = None, thread_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Every complete line, oldest first, keeping those that match the filters given. A last
        line still being written (no newline yet) is left for the next read."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        complete = text[: text.rfind("\n") + 1]
        return [
            line
            for line in map(json.loads, complete.splitlines())
            if (run_id is None or line["run_id"] == run_id)
            and (event is None or line["event"] == event)
            and (thread_id is None or line["thread_id"] == thread_id)
        ]

    def count(self, *, run_id: str | None = None, event: str | None = None) -> int:
        return len(self.lines(run_id=run_id, event=event))

    def first(self, run_id: str, event: str = "start") -> dict[str, Any] | None:
        """The run's first line of this event, or None."""
        return next(iter(self.lines(run_id=run_id, event=event)), None)

    def pid(self, run_id: str) -> int:
        """The process that executed the run, as the assistant itself recorded at its start;
        LookupError if the run never started."""
        start = self.first(run_id)
        if start is None:
            raise LookupError(f"run {run_id} never started (no start line in {self.path})")
        return int(start["pid"])

    def starts(self) -> Counter[str]:
        """How many times each run's body began."""
        return Counter(line["run_id"] for line in self.lines(event="start"))

    def duplicated(self) -> int:
        """Executions beyond the first, over all runs."""
        return sum(count - 1 for count in self.starts().values() if count > 1)

    def intervals(self) -> dict[str, tuple[float, float]]:
        """run_id -> (first, last) time its assistant recorded anything."""
        return _intervals(self.lines())

    def overlapping(self) -> int:
        """Pairs of runs of one thread whose recorded executions overlap in time."""
        lines = self.lines()
        intervals = _intervals(lines)  # from the same read as thread_of
        thread_of = {line["run_id"]: line["thread_id"] for line in lines}
        count = 0
        for a, b in itertools.combinations(sorted(intervals), 2):
            (a0, a1), (b0, b1) = intervals[a], intervals[b]
            if thread_of[a] == thread_of[b] and a0 < b1 and b0 < a1:
                count += 1
        return count


def _intervals(lines: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    times: dict[str, list[float]] = {}
    for line in lines:
        times.setdefault(line["run_id"], []).append(line["time"])
    return {run_id: (min(seen), max(seen)) for run_id, seen in times.items()}
