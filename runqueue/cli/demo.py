"""`runqueue demo`: a real worker fleet of one, every strategy, a cancel and a live run
stream, checked live.

The demo starts a real prefork worker (`python -m runqueue worker`) on the configured
backend, submits runs on six threads, follows one run's stream as it runs, and proves each
guarantee from what the assistants themselves wrote (journal lines with their pid,
checkpoints, stream events), not from the status column alone. It prints one
`PASS name: ...` or `FAIL name: ...` line per guarantee. This module plays the scenario;
demo_checks.py judges it; demo_scenario.py holds the runs it asks for and what it keeps.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from typing import Any

from celery import Celery
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from runqueue.celery.app import runtime_of
from runqueue.cli.demo_checks import Check, DemoChecks
from runqueue.cli.demo_scenario import (
    AGENT_ASSISTANT,
    ENQUEUED_RUNS,
    GRAPH_ASSISTANT,
    GRAPH_RUN,
    GUARANTEES,
    LONG_GRAPH_RUN,
    LONG_RUN,
    REJECT_ATTEMPTS,
    REQUIRED_ASSISTANTS,
    STREAMED_RUN,
    DemoError,
    Scenario,
    StreamTail,
    agent_run,
)
from runqueue.cli.processes import WorkerProcess, WorkerProcessError, pid_alive
from runqueue.cli.render import runs_table
from runqueue.errors import ConflictError, RunQueueError, first_line
from runqueue.records import AbortAction, RunRecord
from runqueue.registry import SyncRunManager
from runqueue.settings import redact_url
from runqueue.store import migrate


class Demo(DemoChecks):
    """Drives the scenario on one manager and one worker, refreshing the live table."""

    def __init__(self, manager: SyncRunManager, worker: WorkerProcess, live: Live | None):
        self.manager, self.worker, self.live = manager, worker, live
        settings = manager.settings
        suffix = uuid.uuid4().hex[:6]
        # One folder per demo: a used data dir keeps earlier demos' journals, never judged.
        self.scenario = Scenario(suffix, settings.data_dir / "journals" / f"demo-{suffix}")
        self.scenario.journal_dir.mkdir(parents=True, exist_ok=True)
        self.phase = "starting"
        self.tail: StreamTail | None = None
        self.graph_tail: StreamTail | None = None
        self.agent_tail: StreamTail | None = None
        assistants = manager.assistants()
        self.with_graph = GRAPH_ASSISTANT in assistants
        self.with_agent = self.with_graph and AGENT_ASSISTANT in assistants
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

    def final(self, role: str) -> bool:
        run = self.manager.get(self.scenario.runs[role])
        return run is not None and run.is_final

    def play(self) -> None:
        """Every strategy, one cancel, one streamed run and two graphs, on eight threads at
        once."""
        s = self.scenario
        self.submit_first_runs()
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
        self.finish()

    def submit_first_runs(self) -> None:
        """Each thread's first runs: those the later steps interrupt, cancel and roll back,
        the streamed ones, and the queue."""
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
        # agent: async nodes, a chat model calling two tools, a subgraph, the run's context;
        # last, behind the runs that the later steps wait for.
        if self.with_agent:
            kwargs = agent_run(s.journal("agent"))
            agent = self.submit(
                "agent.run",
                "agent",
                AGENT_ASSISTANT,
                "reject",
                "agent run, calling tools",
                **kwargs,
            )
            self.agent_tail = StreamTail(self.manager, agent.run_id)
            self.agent_tail.start()

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

    def finish(self) -> None:
        """Every run final, every followed stream ended, the stopped runs' processes gone."""
        s = self.scenario
        self.wait_for("every run to finish", lambda: all(self.final(role) for role in s.runs))
        self.wait_for("the streamed run's end", lambda: not self.tail.is_alive(), 5.0)
        if self.graph_tail is not None:
            self.wait_for("the graph run's end", lambda: not self.graph_tail.is_alive(), 5.0)
        if self.agent_tail is not None:
            self.wait_for("the agent run's end", lambda: not self.agent_tail.is_alive(), 5.0)
        for guarantee, role in (("interrupt", "interrupt.old"), ("cancel", "cancel.target")):
            pid = self.pid_of(guarantee, role)
            if pid is not None:
                with contextlib.suppress(DemoError, WorkerProcessError):
                    self.wait_for(f"pid {pid} to exit", lambda pid=pid: not pid_alive(pid), 5.0)
        self.phase = "done"
        self.render(force=True)

    # -- showing -------------------------------------------------------------------------

    def runs(self) -> list[RunRecord]:
        records = []
        for guarantee in (*GUARANTEES, "agent"):
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
        tails = (self.tail, self.graph_tail, self.agent_tail)
        parts = [table] + [tail.line() for tail in tails if tail]
        parts.append(Text(f"now: {self.phase}", style="dim"))
        self.live.update(Group(*parts), refresh=True)


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
