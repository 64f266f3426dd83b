"""Rich renderings of runs, threads and run histories, for the CLI and the demo."""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from runqueue.records import RunEvent, RunRecord, RunStatus, ThreadRecord
from runqueue.webhooks import WebhookDelivery

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
    return natural_width(out, table) <= out.width


def first_that_fits(out: Console, layouts: Iterable[Callable[..., Table]]) -> Table:
    """The first layout (widest first) whose table fits the terminal; else the last one
    with its first column (an id, never split over lines) cut to fit, ending in `…`."""
    layout = None
    for layout in layouts:
        table = layout()
        if fits(out, table):
            return table
    assert layout is not None, "no layout given"
    width = max((Text.from_markup(cell).cell_len for cell in table.columns[0].cells), default=6)
    excess = natural_width(out, table) - out.width
    return layout(id_width=max(width - excess, 6))


def natural_width(out: Console, table: Table) -> int:
    return out.measure(table, options=out.options.update_width(1_000_000)).maximum


def note(out: Console, text: str) -> None:
    """A line under a table, wrapped at word boundaries to the terminal's width."""
    out.print(Text(text, style="dim"), overflow="fold", soft_wrap=False)


def short_time(value: datetime) -> str:
    """A time a person reads at a glance, to the second, in UTC: `2026-05-01 13:04:05`."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


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
    hide: Iterable[str] = (),
    id_width: int | None = None,
) -> Table:
    """One row per run: thread, run, assistant, strategy, status, duration, less the columns
    in `hide` (a narrow terminal drops them). `ids`: the id to show for a run (a unique
    prefix in a narrow terminal); `id_width`: the thread column's width at most. Ids are
    never split over lines: the run column is never cut, and a thread id too long for its
    column ends in `…`."""
    runs = list(runs)
    ids = ids or {}
    hide = set(hide)
    shown = [ids.get(run.run_id, run.run_id) for run in runs]
    table = Table(title=title, expand=False)
    if "thread" not in hide:
        table.add_column("thread", no_wrap=True, overflow="ellipsis", max_width=id_width)
    table.add_column("run", no_wrap=True, min_width=max(map(len, shown), default=3))
    columns = [c for c in ("assistant", "strategy", "status", "duration") if c not in hide]
    for column in columns:
        table.add_column(column, no_wrap=True)
    if labels:
        table.add_column("note")
    now = datetime.now(UTC)
    for run, run_id in zip(runs, shown, strict=True):
        cells = {
            "assistant": run.assistant_id,
            "strategy": run.multitask_strategy.value if run.multitask_strategy else "-",
            "status": status_text(run.status),
            "duration": duration(run, now)
            if run.due_at is None or run.started_at is not None or run.is_final
            else f"due {clock(run.due_at)}",
        }
        row = ([] if "thread" in hide else [escape(run.thread_id)]) + [run_id]
        row += [cells[column] for column in columns]
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
        ("worker losses", str(run.worker_losses)),
        ("created", run.created_at.isoformat()),
        ("due", run.due_at.isoformat() if run.due_at else "-"),
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


def webhook_table(delivery: WebhookDelivery) -> Table:
    """A run's webhook delivery: its state, then one row per POST, oldest first."""
    when = delivery.delivered_at or delivery.next_attempt_at
    title = f"webhook {delivery.state.value}" + (f" ({when.isoformat()})" if when else "")
    table = Table(title=escape(title), caption=escape(delivery.url))
    for column in ("attempt", "started", "worker", "outcome", "status", "ms", "error"):
        table.add_column(column, overflow="fold")
    for attempt in delivery.history:
        table.add_row(
            str(attempt.attempt),
            attempt.started_at.isoformat(),
            escape(attempt.worker or "-"),
            attempt.outcome,
            str(attempt.status_code or "-"),
            str(attempt.duration_ms if attempt.duration_ms is not None else "-"),
            escape(attempt.error or ""),
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


def threads_table(
    threads: Iterable[tuple[ThreadRecord, dict[str, int]]],
    *,
    title: str | None = None,
    compact: bool = False,
    hide: Iterable[str] = (),
    id_width: int | None = None,
) -> Table:
    """One row per thread: its id (never split over lines: `…` if it must be cut), user,
    last update (UTC, to the second) and run counts by status, one column each, or with
    `compact` one `runs` column naming the statuses it has. `hide`: columns to leave out;
    `id_width`: the thread column's at most."""
    hide = set(hide)
    table = Table(title=title)
    table.add_column("thread", no_wrap=True, overflow="ellipsis", max_width=id_width)
    columns = [c for c in ("user", "updated (UTC)") if c not in hide]
    for column in columns:
        table.add_column(column, no_wrap=True)
    statuses = [] if compact else list(RunStatus)
    for status in statuses:
        table.add_column(status.value, justify="right")
    if compact:
        table.add_column("runs")
    for thread, counts in threads:
        cells = {
            "user": escape(thread.user_id or "-"),
            "updated (UTC)": short_time(thread.updated_at),
        }
        row = [escape(thread.thread_id)] + [cells[column] for column in columns]
        row += [str(counts.get(status.value, 0)) for status in statuses]
        if compact:
            row.append(
                ", ".join(f"{counts[s.value]} {s.value}" for s in RunStatus if counts.get(s.value))
                or "none"
            )
        table.add_row(*row)
    return table


def _json(value: object) -> str:
    return escape(json.dumps(value)) if value is not None else "-"
