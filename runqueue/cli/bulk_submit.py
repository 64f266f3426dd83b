"""`runqueue submit --from FILE`: many runs from a JSON Lines file, each line checked before
any is written, then created through create_many() in transactions of CHUNK runs."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import click

from runqueue.cli.commands import CliError
from runqueue.errors import RunQueueError, first_line, plural
from runqueue.records import MultitaskStrategy, RunRecord
from runqueue.registry import RunRequest, SyncRunManager

CHUNK = 1000  # runs per create_many() transaction
SHOWN_PROBLEMS = 20  # bad or refused lines listed one by one; the rest are counted


@dataclass(frozen=True)
class Line:
    """One request of the file, with its line number (1-based, blank lines counted)."""

    number: int
    request: RunRequest


def read_requests(
    source: IO[bytes], assistant: str | None, strategy: MultitaskStrategy
) -> tuple[list[Line], list[tuple[int, str]]]:
    """Every non-blank line as a request, and (line number, reason) for each line that is
    not one. ASSISTANT and --strategy fill in a line that names no assistant_id or
    multitask_strategy."""
    lines: list[Line] = []
    bad: list[tuple[int, str]] = []
    defaults: dict[str, Any] = {"multitask_strategy": strategy.value}
    if assistant is not None:
        defaults["assistant_id"] = assistant
    for number, raw in enumerate(source, start=1):
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            bad.append((number, "not UTF-8 text"))
            continue
        if not text:
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            bad.append((number, f"not JSON ({exc})"))
            continue
        except RecursionError:  # the decoder gives up on nesting this deep
            bad.append((number, "nests too deep to decode"))
            continue
        try:
            fields = {**defaults, **value} if isinstance(value, dict) else value
            lines.append(Line(number, RunRequest.from_json(fields)))
        except RunQueueError as exc:
            bad.append((number, first_line(exc)))
    return lines, bad


@dataclass
class Submitted:
    """What submit_from() did: how many runs it created, and the lines their thread's
    strategy refused, with why."""

    created: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)


def submit_from(
    manager: SyncRunManager, lines: list[Line], bad: list[tuple[int, str]], name: str
) -> Submitted:
    """Check every request as create_many() would; any bad line: report each, write nothing.
    Then create them CHUNK at a time, one JSON line per request on stdout (its run, or why
    its thread's strategy refused it), progress on stderr."""
    read = len(bad) + len(lines)
    problems = manager.validate_many([line.request for line in lines])
    bad = sorted(
        bad + [(line.number, first_line(p)) for line, p in zip(lines, problems, strict=True) if p]
    )
    if bad:
        report(bad, "error: ")
        verb = "is" if len(bad) == 1 else "are"
        raise CliError(
            f"{len(bad)} of {plural(read, 'request')} in {name} {verb} bad; nothing was submitted"
        )
    submitted = Submitted()
    with progress(len(lines)) as advance:
        for chunk in chunks(lines, CHUNK):
            try:
                outcomes = manager.create_many([line.request for line in chunk])
            except RunQueueError as exc:
                raise CliError(
                    f"{first_line(exc)}; {plural(submitted.created, 'run')} created before it "
                    f"(on stdout), from line {chunk[0].number} on nothing was submitted"
                ) from None
            for line, outcome in zip(chunk, outcomes, strict=True):
                click.echo(json.dumps(outcome_json(line, outcome)))
                if isinstance(outcome, RunRecord):
                    submitted.created += 1
                else:
                    submitted.refused.append((line.number, first_line(outcome)))
            sys.stdout.flush()
            advance(len(chunk))
    return submitted


def summarize(submitted: Submitted, name: str) -> None:
    """The last line on stderr: how many were created; CliError if any was refused."""
    refused = submitted.refused
    if not refused:
        click.echo(f"created {plural(submitted.created, 'run')} from {name}", err=True)
        return
    report(refused, "refused: ")
    numbers = ", ".join(str(number) for number, _ in refused[:SHOWN_PROBLEMS])
    more = ", ..." if len(refused) > SHOWN_PROBLEMS else ""
    raise CliError(
        f"{len(refused)} of {plural(len(refused) + submitted.created, 'run')} refused by their "
        f"thread's strategy (line{'s' if len(refused) > 1 else ''} {numbers}{more}); "
        f"{submitted.created} created"
    )


def outcome_json(line: Line, outcome: RunRecord | RunQueueError) -> dict[str, Any]:
    """A request's outcome as stdout shows it: `submit`'s keys, with its line number."""
    if isinstance(outcome, RunRecord):
        return {
            "line": line.number,
            "run_id": outcome.run_id,
            "thread_id": outcome.thread_id,
            "status": outcome.status.value,
        }
    return {
        "line": line.number,
        "run_id": None,
        "thread_id": line.request.thread_id,
        "status": "refused",
        "error": first_line(outcome),
    }


def report(problems: Sequence[tuple[int, str]], prefix: str) -> None:
    """`line N: reason` on stderr for the first SHOWN_PROBLEMS, then how many more."""
    for number, reason in problems[:SHOWN_PROBLEMS]:
        click.echo(f"{prefix}line {number}: {reason}", err=True)
    if len(problems) > SHOWN_PROBLEMS:
        click.echo(f"{prefix}... and {len(problems) - SHOWN_PROBLEMS} more line(s)", err=True)


def chunks(lines: list[Line], size: int) -> Iterator[list[Line]]:
    for start in range(0, len(lines), size):
        yield lines[start : start + size]


@contextlib.contextmanager
def progress(total: int) -> Iterator[Callable[[int], None]]:
    """advance(count) after each committed chunk. Shown on stderr for an input longer than
    one chunk: a Rich bar on a terminal, else one line per chunk (a log, a CI job)."""
    if total <= CHUNK:
        yield lambda count: None
    elif sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import Progress

        with Progress(console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("submitting", total=total)
            yield lambda count: bar.advance(task, count)
    else:
        done = 0

        def advance(count: int) -> None:
            nonlocal done
            done += count
            click.echo(f"submitted {done}/{total}", err=True)

        yield advance
