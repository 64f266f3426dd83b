"""`runqueue demo`: a real worker fleet of one, every strategy, a cancel and a live run
stream, checked live.

The demo starts a real prefork worker (`python -m runqueue worker`) on the configured
backend, submits runs on six threads, follows one run's stream as it runs, and proves each
guarantee from what the assistants themselves wrote (journal lines with their pid,
checkpoints, stream events), not from the status column alone. It prints one
`PASS name: ...` or `FAIL name: ...` line per guarantee.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from runqueue.app import runtime_of
from runqueue.cli.processes import WorkerProcess, WorkerProcessError, pid_alive
from runqueue.cli.render import runs_table
from runqueue.errors import ConflictError, RunQueueError, first_line
from runqueue.journal import Journal
from runqueue.records import AbortAction, RunRecord, RunStatus, StreamEvent
from runqueue.registry import SyncRunManager
from runqueue.settings import redact_url
from runqueue.store.database import migrate

GUARANTEES = ("reject", "interrupt", "rollback", "enqueue", "cancel", "stream", "graph")
REQUIRED_ASSISTANTS = ("echo", "steps", "noop")
GRAPH_ASSISTANT = "research"  # registered when the langgraph extra is installed
LONG_RUN = {"steps": 200, "delay": 0.1}  # 20 s unless interrupted; the demo never waits it out
STREAMED_RUN = {"steps": 5, "delay": 0.3}  # its stream is shown live under the table
# The example graph (workers/graphs.py): one run streams its reply token by token, a second
# one, working long, is rolled back midway.
GRAPH_RUN = {"input": {"topic": "runqueue", "token_delay": 0.05},
             "stream_mode": ["updates", "messages"]}  # fmt: skip
LONG_GRAPH_RUN = {"input": {"topic": "rollback", "pause": 20.0}}
REJECT_ATTEMPTS = 3
ENQUEUED_RUNS = 4


class DemoError(RunQueueError):
    """The demo could not complete."""


@dataclass(frozen=True)
class Check:
    """One guarantee and whether the demo saw it hold."""

    name: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'} {self.name}: {self.detail}"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


@dataclass
class Scenario:
    """The runs the demo created, by role, and what it observed along the way."""

    suffix: str
    journal_dir: Path
    runs: dict[str, str] = field(default_factory=dict)  # role -> run_id
    notes: dict[str, str] = field(default_factory=dict)  # run_id -> label in the live table
    rejected: list[str] = field(default_factory=list)  # ConflictError messages
    observed: dict[str, Any] = field(default_factory=dict)

    def thread(self, guarantee: str) -> str:
        return f"demo-{self.suffix}-{guarantee}"

    def journal(self, guarantee: str) -> Journal:
        return Journal(self.journal_dir / f"{guarantee}.jsonl")


class StreamTail(threading.Thread):
    """Follows one run's stream, as any reader on another machine would."""

    def __init__(self, manager: SyncRunManager, run_id: str):
        super().__init__(name="demo-stream", daemon=True)
        self.manager, self.run_id = manager, run_id
        self.events: list[StreamEvent] = []
        self.error: str | None = None

    def run(self) -> None:
        try:
            for event in self.manager.stream(self.run_id):
                self.events.append(event)
        except RunQueueError as exc:
            self.error = first_line(exc)

    def tokens(self) -> list[str]:
        """The chat model's reply so far, token by token (a graph's `messages` events)."""
        return [
            event.data[0]["content"]
            for event in self.events
            if event.event == "messages" and event.data[0].get("type") == "AIMessageChunk"
        ]

    def line(self) -> Text:
        if any(event.event == "messages" for event in self.events):
            ending = [e.data["status"] for e in self.events if e.event == "end"]
            text = "".join(self.tokens()) + (f"  [end {ending[0]}]" if ending else "")
            return Text(f"tokens of graph run {self.run_id}: {text}")
        shown = []
        for event in self.events:
            if event.event == "step":
                shown.append(f"step {event.data['step']}/{event.data['of']}")
            elif event.event == "end":
                shown.append(f"end {event.data['status']}")
            else:
                shown.append(event.event)
        return Text(f"stream of run {self.run_id}: " + " > ".join(shown or ["waiting"]))


class Demo:
    """Drives the scenario on one manager and one worker, refreshing the live table."""

    def __init__(self, manager: SyncRunManager, worker: WorkerProcess, live: Live | None):
        self.manager, self.worker, self.live = manager, worker, live
        settings = manager.settings
        self.scenario = Scenario(uuid.uuid4().hex[:6], settings.data_dir / "journals")
        self.scenario.journal_dir.mkdir(parents=True, exist_ok=True)
        self.phase = "starting"
        self.tail: StreamTail | None = None
        self.graph_tail: StreamTail | None = None
        self.with_graph = GRAPH_ASSISTANT in manager.assistants()
        self._last_render = 0.0

    # -- driving ------------------------------------------------------------------------

    def submit(
        self, role: str, guarantee: str, assistant: str, strategy: str, note: str, **kwargs: Any
    ) -> RunRecord:
        s = self.scenario
        if assistant == "steps" or assistant == "echo":
            kwargs.setdefault("journal", str(s.journal(guarantee)))
        run = self.manager.create_or_reject(
            s.thread(guarantee), assistant, kwargs=kwargs, multitask_strategy=strategy
        )
        s.runs[role] = run.run_id
        s.notes[run.run_id] = note
        self.render(force=True)
        return run

    def wait_for(self, what: str, predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
        self.phase = what
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            self.worker.check_alive()
            if time.monotonic() > deadline:
                raise DemoError(f"timed out after {timeout:.0f}s waiting for: {what}")
            self.render()
            time.sleep(0.05)

    def steps_done(self, guarantee: str, role: str) -> list[dict[str, Any]]:
        return self.scenario.journal(guarantee).lines(run_id=self.scenario.runs[role], event="step")

    def final(self, role: str) -> bool:
        run = self.manager.get(self.scenario.runs[role])
        return run is not None and run.is_final

    def play(self) -> None:
        """Every strategy, one cancel, one streamed run and a graph, on seven threads at once."""
        s = self.scenario
        # reject: while a run is active, every competing create_or_reject is refused.
        self.submit("reject.accepted", "reject", "steps", "reject", "accepted", steps=4, delay=0.1)
        for _ in range(REJECT_ATTEMPTS):
            try:
                self.manager.create_or_reject(
                    s.thread("reject"), "echo", multitask_strategy="reject"
                )
            except ConflictError as exc:
                s.rejected.append(str(exc))
        s.notes[s.runs["reject.accepted"]] = f"accepted; {len(s.rejected)} competitors rejected"
        # stream: one run's events, read live while it runs.
        streamed = self.submit("stream.run", "stream", "steps", "reject", "streamed live",
                               **STREAMED_RUN)  # fmt: skip
        self.tail = StreamTail(self.manager, streamed.run_id)
        self.tail.start()
        # interrupt / cancel: long runs that a later step stops midway.
        self.submit(
            "interrupt.old", "interrupt", "steps", "interrupt", "to be interrupted", **LONG_RUN
        )
        self.submit("cancel.target", "cancel", "steps", "interrupt", "to be cancelled", **LONG_RUN)
        # graph: a LangGraph run streams its reply's tokens, live.
        if self.with_graph:
            graph_run = self.submit("graph.base", "graph", GRAPH_ASSISTANT, "enqueue",
                                    "graph run, streaming tokens", **GRAPH_RUN)  # fmt: skip
            self.graph_tail = StreamTail(self.manager, graph_run.run_id)
            self.graph_tail.start()
        # rollback: a first run writes the state the rollback must come back to.
        self.submit("rollback.base", "rollback", "echo", "rollback", "writes the base state")
        # enqueue: FIFO, one at a time.
        for index in range(ENQUEUED_RUNS):
            self.submit(
                f"enqueue.{index}", "enqueue", "steps", "enqueue", f"queued #{index + 1}",
                steps=2, delay=0.05,
            )  # fmt: skip

        self.wait_for("the rollback thread's base state", lambda: self.final("rollback.base"))
        s.observed["checkpoints_before"] = self.thread_state("rollback")
        self.submit(
            "rollback.old", "rollback", "steps", "rollback", "to be rolled back", **LONG_RUN
        )

        self.wait_for(
            "the long run to start", lambda: self.steps_done("interrupt", "interrupt.old")
        )
        self.submit("interrupt.new", "interrupt", "echo", "interrupt", "interrupts the old run")

        self.wait_for(
            "the run to cancel to start", lambda: self.steps_done("cancel", "cancel.target")
        )
        cancelled = self.manager.cancel(s.runs["cancel.target"], action=AbortAction.interrupt)
        s.observed["cancel_returned"] = cancelled
        s.observed["cancel_at"] = time.time()
        s.notes[s.runs["cancel.target"]] = "cancelled while running"

        self.wait_for(
            "the run to roll back to write a checkpoint",
            lambda: any(c.run_id == s.runs["rollback.old"] for c in self.checkpoints("rollback")),
        )
        s.observed["rolled_back_checkpoints"] = sum(
            c.run_id == s.runs["rollback.old"] for c in self.checkpoints("rollback")
        )
        self.submit("rollback.new", "rollback", "noop", "rollback", "rolls the old run back")

        if self.with_graph:
            self.play_graph_rollback()
        self.wait_for("every run to finish", lambda: all(self.final(role) for role in s.runs))
        self.wait_for("the streamed run's end", lambda: not self.tail.is_alive(), 5.0)
        if self.graph_tail is not None:
            self.wait_for("the graph run's end", lambda: not self.graph_tail.is_alive(), 5.0)
        for guarantee, role in (("interrupt", "interrupt.old"), ("cancel", "cancel.target")):
            pid = self.pid_of(guarantee, role)
            if pid is not None:
                with contextlib.suppress(DemoError, WorkerProcessError):
                    self.wait_for(f"pid {pid} to exit", lambda pid=pid: not pid_alive(pid), 5.0)
        self.phase = "done"
        self.render(force=True)

    def play_graph_rollback(self) -> None:
        """After the graph run, a long one writes state, then is rolled back midway."""
        s = self.scenario
        thread_id = s.thread("graph")
        self.wait_for("the graph run to finish", lambda: self.final("graph.base"), 30.0)
        s.observed["graph_state_before"] = self.manager.state(thread_id)
        old = self.submit(
            "graph.old", "graph", GRAPH_ASSISTANT, "enqueue", "graph run, rolled back",
            **LONG_GRAPH_RUN,
        )  # fmt: skip
        marker = f"plan@{old.run_id}"
        self.wait_for(
            "the graph run to roll back to write state",
            lambda: marker in (self.manager.state(thread_id).values or {}).get("log", []),
        )
        s.observed["graph_state_during"] = self.manager.state(thread_id)
        self.manager.cancel(old.run_id, action=AbortAction.rollback)
        self.wait_for("the rolled-back graph run to stop", lambda: self.final("graph.old"))
        s.observed["graph_state_after"] = self.manager.state(thread_id)

    # -- observing -----------------------------------------------------------------------

    def checkpoints(self, guarantee: str) -> list[Any]:
        return self.manager.checkpoints(self.scenario.thread(guarantee))

    def thread_state(self, guarantee: str) -> list[tuple[str, Any]]:
        return [(c.run_id, c.values) for c in self.checkpoints(guarantee)]

    def pid_of(self, guarantee: str, role: str) -> int | None:
        """The pool process that executed the run, as the assistant itself recorded."""
        run_id = self.scenario.runs.get(role)
        try:
            return None if run_id is None else self.scenario.journal(guarantee).pid(run_id)
        except LookupError:  # it never started
            return None

    def runs(self) -> list[RunRecord]:
        records = []
        for guarantee in GUARANTEES:
            records.extend(reversed(self.manager.list_by_thread(self.scenario.thread(guarantee))))
        return records

    def render(self, *, force: bool = False) -> None:
        if self.live is None:
            return
        now = time.monotonic()
        if not force and now - self._last_render < 0.2:
            return
        self._last_render = now
        table = runs_table(self.runs(), title="runqueue demo", labels=self.scenario.notes)
        parts = [table] + [tail.line() for tail in (self.tail, self.graph_tail) if tail]
        parts.append(Text(f"now: {self.phase}", style="dim"))
        self.live.update(Group(*parts), refresh=True)

    # -- judging -------------------------------------------------------------------------

    def checks(self) -> list[Check]:
        judges = {
            "reject": self.check_reject,
            "interrupt": self.check_interrupt,
            "rollback": self.check_rollback,
            "enqueue": self.check_enqueue,
            "cancel": self.check_cancel,
            "stream": self.check_stream,
            "graph": self.check_graph,
        }
        if not self.with_graph:
            del judges["graph"]
        results = []
        for name, judge in judges.items():
            try:
                results.append(judge())
            except (KeyError, RunQueueError, AssertionError) as exc:
                results.append(Check(name, False, f"not observed ({type(exc).__name__}: {exc})"))
        return results

    def run(self, role: str) -> RunRecord:
        run = self.manager.get(self.scenario.runs[role])
        assert run is not None, f"run {role} is missing"
        return run

    def check_reject(self) -> Check:
        s = self.scenario
        accepted = self.run("reject.accepted")
        on_thread = self.manager.list_by_thread(s.thread("reject"))
        passed = (
            len(s.rejected) == REJECT_ATTEMPTS
            and len(on_thread) == 1
            and accepted.status is RunStatus.success
        )
        return Check(
            "reject",
            passed,
            f"rejected={len(s.rejected)}/{REJECT_ATTEMPTS} competing runs refused with "
            f"ConflictError while run {accepted.run_id} was active; the thread holds "
            f"{len(on_thread)} run, which ended {accepted.status.value}",
        )

    def check_interrupt(self) -> Check:
        old, new = self.run("interrupt.old"), self.run("interrupt.new")
        intervals = self.scenario.journal("interrupt").intervals()
        kept = sum(c.run_id == old.run_id for c in self.checkpoints("interrupt"))
        pid = self.pid_of("interrupt", "interrupt.old")
        stopped = pid is not None and not pid_alive(pid)
        both = old.run_id in intervals and new.run_id in intervals
        gap = intervals[new.run_id][0] - intervals[old.run_id][1] if both else float("nan")
        passed = (
            old.status is RunStatus.interrupted
            and new.status is RunStatus.success
            and kept > 0
            and stopped
            and gap >= 0
        )
        return Check(
            "interrupt",
            passed,
            f"interrupted=1 run {old.run_id} ({old.status.value}, pid {pid} "
            f"{'stopped' if stopped else 'STILL ALIVE'}, {plural(kept, 'checkpoint')} kept); "
            f"the new run started {gap:.2f}s after it stopped, no overlap",
        )

    def check_rollback(self) -> Check:
        s = self.scenario
        old, new = self.run("rollback.old"), self.run("rollback.new")
        before = s.observed["checkpoints_before"]
        after = self.thread_state("rollback")
        written = s.observed.get("rolled_back_checkpoints", 0)
        passed = (
            after == before
            and written > 0
            and old.status is RunStatus.interrupted
            and old.abort_action is AbortAction.rollback
            and new.status is RunStatus.success
        )
        return Check(
            "rollback",
            passed,
            f"state_equal={after == before}: run {old.run_id} "
            f"wrote {plural(written, 'checkpoint')}, "
            f"was rolled back ({old.status.value}, abort action "
            f"{old.abort_action.value if old.abort_action else '-'}); the thread's checkpoints "
            f"after ({len(after)}) equal those before ({len(before)})",
        )

    def check_enqueue(self) -> Check:
        s = self.scenario
        created = [s.runs[f"enqueue.{index}"] for index in range(ENQUEUED_RUNS)]
        statuses = [self.manager.get(run_id).status for run_id in created]
        journal = s.journal("enqueue")
        started = [line["run_id"] for line in journal.lines(event="start")]
        recorded = journal.intervals()
        intervals = [recorded[run_id] for run_id in created if run_id in recorded]
        one_at_a_time = len(intervals) == len(created) and all(
            earlier[1] <= later[0] for earlier, later in zip(intervals, intervals[1:], strict=False)
        )
        fifo = started == created
        passed = fifo and one_at_a_time and all(st is RunStatus.success for st in statuses)
        return Check(
            "enqueue",
            passed,
            f"fifo={fifo}: {len(created)} runs on one thread executed in creation order "
            f"({'one at a time' if one_at_a_time else 'OVERLAPPING'}); statuses "
            f"{', '.join(st.value for st in statuses)}",
        )

    def check_cancel(self) -> Check:
        s = self.scenario
        run = self.run("cancel.target")
        pid = self.pid_of("cancel", "cancel.target")
        stopped = pid is not None and not pid_alive(pid)
        steps = self.steps_done("cancel", "cancel.target")
        late = [line for line in steps if line["time"] > (run.ended_at.timestamp() + 0.05)]
        passed = (
            s.observed.get("cancel_returned") is True
            and run.status is RunStatus.interrupted
            and stopped
            and not late
        )
        return Check(
            "cancel",
            passed,
            f"process_stopped={stopped}: run {run.run_id} cancelled after "
            f"{plural(len(steps), 'step')} ({run.status.value}); its pool process pid {pid} is "
            f"{'gone' if stopped else 'STILL ALIVE'}, {len(late)} steps after it ended",
        )

    def check_stream(self) -> Check:
        run = self.run("stream.run")
        assert self.tail is not None, "the stream was never followed"
        events = self.tail.events
        steps = [event.data["step"] for event in events if event.event == "step"]
        journaled = len(self.steps_done("stream", "stream.run"))
        ids = [int(event.id) for event in events if event.id is not None]
        passed = (
            self.tail.error is None
            and bool(events)
            and events[0].event == "metadata"
            and steps == list(range(1, STREAMED_RUN["steps"] + 1)) == list(range(1, journaled + 1))
            and events[-1].event == "end"
            and events[-1].data == {"status": run.status.value}
            and run.status is RunStatus.success
            and ids == list(range(1, len(events) + 1))
        )
        ending = events[-1].data.get("status") if events and events[-1].event == "end" else "none"
        return Check(
            "stream",
            passed,
            f"run {run.run_id} streamed metadata, {plural(len(steps), 'step')} and its end "
            f"({ending}) live to a reader: ids 1..{len(events)} in order, no gap"
            + (f"; reader failed: {self.tail.error}" if self.tail.error else ""),
        )

    def check_graph(self) -> Check:
        s = self.scenario
        base, old = self.run("graph.base"), self.run("graph.old")
        assert self.graph_tail is not None, "the graph run's stream was never followed"
        tokens = self.graph_tail.tokens()
        before = s.observed["graph_state_before"]
        during = s.observed["graph_state_during"]
        after = s.observed["graph_state_after"]
        reply = base.result["messages"][-1]["content"] if base.result else ""
        passed = (
            base.status is RunStatus.success
            and len(tokens) > 1
            and "".join(tokens) == reply
            and during.values != before.values
            and old.status is RunStatus.interrupted
            and after.values == before.values
            and after.checkpoint_id == before.checkpoint_id
        )
        return Check(
            "graph",
            passed,
            f"state_equal={after.values == before.values}: graph run {base.run_id} streamed "
            f"its reply in {plural(len(tokens), 'token')}; run {old.run_id} wrote state, was "
            f"rolled back ({old.status.value}), and the thread's state is again checkpoint "
            f"{after.checkpoint_id}",
        )


def run_demo(app: Celery, *, concurrency: int = 4, console: Console | None = None) -> bool:
    """Migrate, start a worker, play the scenario, print the summary. True if all held."""
    console = console or Console()
    settings = runtime_of(app).settings
    manager = SyncRunManager(app)
    missing = [name for name in REQUIRED_ASSISTANTS if name not in manager.assistants()]
    if missing:
        raise DemoError(
            f"the app {settings.app} lacks the example assistants {', '.join(missing)}; "
            "run the demo with the default app, workers.app:app"
        )
    started = time.monotonic()
    console.print(
        f"runqueue demo: database {redact_url(settings.database_url)}, "
        f"broker {redact_url(settings.broker_url)}, data in {settings.data_dir}",
        highlight=False,
    )
    migrate(settings)
    worker = WorkerProcess(
        settings,
        settings.data_dir / "demo-worker.log",
        concurrency=concurrency,
        name="demo",
    )
    checks: list[Check] = []
    failure: str | None = None
    try:
        worker.start(timeout=30.0)
        console.print(f"worker pid {worker.pid} ready ({concurrency} pool processes)")
        with Live(console=console, auto_refresh=False, transient=False) as live:
            demo = Demo(manager, worker, live)
            try:
                demo.play()
            except RunQueueError as exc:
                failure = first_line(exc)  # the summary stays one line per check
                demo.render(force=True)
            checks = demo.checks()
    finally:
        worker.stop(timeout=10.0)
    elapsed = time.monotonic() - started
    lines = ["", "summary"]
    if failure:
        lines.append(f"FAIL demo: {failure}")
    lines.extend(check.line() for check in checks)
    held = sum(check.passed for check in checks)
    expected = len(GUARANTEES) if GRAPH_ASSISTANT in manager.assistants() else len(GUARANTEES) - 1
    if expected < len(GUARANTEES):
        lines.append("SKIP graph: needs the langgraph extra: pip install 'runqueue[langgraph]'")
    everything = failure is None and held == expected
    lines.append(
        f"{'PASS' if everything else 'FAIL'} all: {held} of {expected} guarantees held "
        f"in {elapsed:.1f}s; worker pid {worker.pid} stopped"
    )
    # Plain lines, not Rich: a summary that scripts grep must never be wrapped or styled.
    print("\n".join(lines), file=console.file, flush=True)
    return everything
