"""Rich renderings of runs, threads and run histories, for the CLI and the demo."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

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
    """Rich output on stdout; wide when piped, so run ids are never cut."""
    if sys.stdout.isatty():
        return Console()
    return Console(width=220, no_color=True, highlight=False)


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
    runs: Iterable[RunRecord], *, title: str | None = None, labels: dict[str, str] | None = None
) -> Table:
    """One row per run: thread, run, assistant, strategy, status, duration."""
    table = Table(title=title, expand=False)
    for column in ("thread", "run", "assistant", "strategy", "status", "duration"):
        table.add_column(column, no_wrap=True)
    if labels:
        table.add_column("note")
    now = datetime.now(UTC)
    for run in runs:
        row = [
            escape(run.thread_id),
            run.run_id,
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


def threads_table(threads: Iterable[tuple[ThreadRecord, dict[str, int]]]) -> Table:
    """One row per thread with its run counts by status."""
    table = Table(title="threads")
    table.add_column("thread", no_wrap=True)
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
