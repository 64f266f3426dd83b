"""Rich renderings of runs, threads and run histories, for the CLI and the demo."""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from runqueue.records import RunEvent, RunRecord, RunStatus, ThreadRecord

STATUS_STYLES = {
    RunStatus.pending: "yellow",
    RunStatus.running: "bold cyan",
    RunStatus.success: "green",
    RunStatus.error: "bold red",
    RunStatus.timeout: "red",
    RunStatus.interrupted: "magenta",
}


def console() -> Console:
    """Rich output on stdout; when piped, as wide as COLUMNS says, else wide enough that
    nothing is cut."""
    if sys.stdout.isatty():
        return Console()
    width = int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS", "").isdigit() else 220
    return Console(width=width, no_color=True, highlight=False)


def fits(out: Console, table: Table) -> bool:
    """True if the table shows at its natural width, nothing folded or cut."""
    natural = out.measure(table, options=out.options.update_width(1_000_000)).maximum
    return natural <= out.width


def json_value(value: Any) -> Any:
    """A record (or a value in one) as JSON takes it: enums by value, times in ISO 8601."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: json_value(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    return value


def print_json(value: Any) -> None:
    """One JSON document on stdout: the --json of every listing (runs, show, threads,
    assistants, workers), records shaped by json_value()."""
    print(json.dumps(json_value(value)))


def thread_json(thread: ThreadRecord, counts: Mapping[str, int]) -> dict[str, Any]:
    """A thread with its run counts by status (every status, zeros included)."""
    return {**json_value(thread), "runs": {s.value: counts.get(s.value, 0) for s in RunStatus}}


def status_text(status: RunStatus) -> str:
    return f"[{STATUS_STYLES[status]}]{status.value}[/]"


def duration(run: RunRecord, now: datetime | None = None) -> str:
    """Seconds the run has executed: start to end, or start to now while it runs."""
    if run.started_at is None:
        return "-"
    end = run.ended_at or now or datetime.now(UTC)
    return f"{max((end - run.started_at).total_seconds(), 0.0):.1f}s"


def clock(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]


def runs_table(
    runs: Iterable[RunRecord],
    *,
    title: str | None = None,
    labels: dict[str, str] | None = None,
    ids: Mapping[str, str] | None = None,
    caption: str | None = None,
) -> Table:
    """One row per run: thread, run, assistant, strategy, status, duration. `ids`: the id to
    show for a run (a unique prefix in a narrow terminal); the run column is never cut."""
    runs = list(runs)
    ids = ids or {}
    shown = [ids.get(run.run_id, run.run_id) for run in runs]
    table = Table(title=title, expand=False, caption=caption)
    longest_thread = max((len(run.thread_id) for run in runs), default=6)
    table.add_column("thread", overflow="fold", min_width=min(longest_thread, 16))
    table.add_column("run", no_wrap=True, min_width=max(map(len, shown), default=3))
    for column in ("assistant", "strategy", "status", "duration"):
        table.add_column(column, no_wrap=True)
    if labels:
        table.add_column("note")
    now = datetime.now(UTC)
    for run, run_id in zip(runs, shown, strict=True):
        row = [
            escape(run.thread_id),
            run_id,
            run.assistant_id,
            run.multitask_strategy.value if run.multitask_strategy else "-",
            status_text(run.status),
            duration(run, now),
        ]
        if labels:
            row.append(labels.get(run.run_id, ""))
        table.add_row(*row)
    return table


def run_table(run: RunRecord) -> Table:
    """Every field of one run, as name/value pairs."""
    table = Table(show_header=False, title=f"run {run.run_id}")
    table.add_column("field", style="bold")
    table.add_column("value")
    fields = [
        ("thread", escape(run.thread_id)),
        ("assistant", run.assistant_id),
        ("status", status_text(run.status)),
        ("strategy", run.multitask_strategy.value if run.multitask_strategy else "-"),
        ("abort action", run.abort_action.value if run.abort_action else "-"),
        ("worker", escape(run.worker or "-")),
        ("attempt", str(run.attempt)),
        ("created", run.created_at.isoformat()),
        ("started", run.started_at.isoformat() if run.started_at else "-"),
        ("ended", run.ended_at.isoformat() if run.ended_at else "-"),
        ("duration", duration(run)),
        ("kwargs", _json(run.kwargs)),
        ("result", _json(run.result)),
        ("error", escape(run.error or "-")),
    ]
    for name, value in fields:
        table.add_row(name, value)
    return table


def events_table(events: Iterable[RunEvent]) -> Table:
    """The run's status transitions, oldest first."""
    table = Table(title="transitions")
    for column in ("at", "status", "worker", "detail"):
        table.add_column(column)
    for event in events:
        table.add_row(
            event.at.isoformat(),
            status_text(event.status),
            escape(event.worker or "-"),
            escape(event.detail or ""),
        )
    return table


def assistants_table(assistants: Iterable[Mapping[str, Any]]) -> Table:
    """One row per registered assistant: name, kind, options, what it does."""
    table = Table(title="assistants")
    for column in ("assistant", "kind", "options", "description"):
        table.add_column(column, overflow="fold")
    for entry in assistants:
        options = ", ".join(f"{k}={v}" for k, v in entry["options"].items()) or "-"
        table.add_row(
            escape(entry["name"]), entry["kind"], escape(options), escape(entry["description"])
        )
    return table


def threads_table(threads: Iterable[tuple[ThreadRecord, dict[str, int]]]) -> Table:
    """One row per thread with its run counts by status."""
    table = Table(title="threads")
    table.add_column("thread", overflow="fold")
    table.add_column("user")
    table.add_column("updated")
    for status in RunStatus:
        table.add_column(status.value, justify="right")
    for thread, counts in threads:
        table.add_row(
            escape(thread.thread_id),
            escape(thread.user_id or "-"),
            thread.updated_at.isoformat(),
            *(str(counts.get(status.value, 0)) for status in RunStatus),
        )
    return table


def _json(value: object) -> str:
    return escape(json.dumps(value)) if value is not None else "-"
