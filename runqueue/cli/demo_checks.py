"""The judging half of `runqueue demo`: each guarantee proved from what the assistants
themselves wrote (journal lines with their pid, checkpoints, stream events), not from the
status column alone, as one `PASS name: ...` or `FAIL name: ...` line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runqueue.cli.demo_scenario import (
    AGENT_ANSWER,
    AGENT_NODES,
    AGENT_TOOLS,
    ENQUEUED_RUNS,
    REJECT_ATTEMPTS,
    STREAMED_RUN,
    Scenario,
    StreamTail,
)
from runqueue.cli.processes import pid_alive
from runqueue.errors import RunQueueError, plural
from runqueue.records import AbortAction, RunRecord, RunStatus
from runqueue.registry import SyncRunManager


@dataclass(frozen=True)
class Check:
    """One guarantee and whether the demo saw it hold."""

    name: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'} {self.name}: {self.detail}"


class DemoChecks:
    """The checks of a played scenario, and the reads they share with the player (Demo, which
    they are mixed into): its runs by role, their journals, checkpoints and streams."""

    manager: SyncRunManager
    scenario: Scenario
    tail: StreamTail | None
    graph_tail: StreamTail | None
    agent_tail: StreamTail | None
    with_graph: bool
    with_agent: bool

    # -- observing -----------------------------------------------------------------------

    def run(self, role: str) -> RunRecord:
        run = self.manager.get(self.scenario.runs[role])
        assert run is not None, f"run {role} is missing"
        return run

    def steps_done(self, guarantee: str, role: str) -> list[dict[str, Any]]:
        return self.scenario.journal(guarantee).lines(run_id=self.scenario.runs[role], event="step")

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
            f"{plural(len(on_thread), 'run')}; the accepted one ended {accepted.status.value}",
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
        # Only this demo's runs: a journal may hold other runs' lines (an earlier demo's).
        position = {run_id: index for index, run_id in enumerate(created, start=1)}
        started = [
            line["run_id"] for line in journal.lines(event="start") if line["run_id"] in position
        ]
        recorded = journal.intervals()
        # In the order they ran: overlap is judged apart from the order (fifo).
        intervals = sorted(recorded[run_id] for run_id in created if run_id in recorded)
        one_at_a_time = len(intervals) == len(created) and all(
            earlier[1] <= later[0] for earlier, later in zip(intervals, intervals[1:], strict=False)
        )
        fifo = started == created
        passed = fifo and one_at_a_time and all(st is RunStatus.success for st in statuses)
        if fifo:
            order = "started in creation order"
        else:
            seen = ", ".join(f"#{position[run_id]}" for run_id in started) or "none"
            order = f"started in the order {seen} (created #1..#{len(created)})"
        if len(intervals) < len(created):
            overlap = f"only {len(intervals)} of them recorded in the journal"
        else:
            overlap = "one at a time" if one_at_a_time else "OVERLAPPING"
        return Check(
            "enqueue",
            passed,
            f"fifo={fifo}: {plural(len(created), 'run')} on one thread {order}, {overlap}; "
            f"statuses {', '.join(st.value for st in statuses)}",
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
            f"{'gone' if stopped else 'STILL ALIVE'}, {plural(len(late), 'step')} after it ended",
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
        detail = (
            f"state_equal={after.values == before.values}: graph run {base.run_id} streamed "
            f"its reply in {plural(len(tokens), 'token')}; run {old.run_id} wrote state, was "
            f"rolled back ({old.status.value}), and the thread's state is again checkpoint "
            f"{after.checkpoint_id}"
        )
        if self.with_agent:
            agent_passed, agent_detail = self.judge_agent()
            passed, detail = passed and agent_passed, f"{detail}; {agent_detail}"
        return Check("graph", passed, detail)

    def judge_agent(self) -> tuple[bool, str]:
        """The agent run, from what it wrote itself: the tool calls its model streamed, the
        tools' and nodes' journal lines (the review subgraph's included), and its final answer,
        streamed token by token and kept in its result, addressed to the context's user."""
        run = self.run("agent.run")
        assert self.agent_tail is not None, "the agent run's stream was never followed"
        journal = self.scenario.journal("agent")
        tools = sorted(line["tool"] for line in journal.lines(run_id=run.run_id, event="tool"))
        nodes = [line["node"] for line in journal.lines(run_id=run.run_id, event="node")]
        asked = sorted(self.agent_tail.tool_calls())
        replies = self.agent_tail.replies()
        result = run.result or {}
        answer = (result.get("messages") or [{}])[-1].get("content")
        passed = (
            run.status is RunStatus.success
            and tools == asked == sorted(AGENT_TOOLS)
            and nodes == AGENT_NODES
            and answer == AGENT_ANSWER
            and replies[-1:] == [AGENT_ANSWER]
            and result.get("review") == "approved"
        )
        return passed, (
            f"agent run {run.run_id} ({run.status.value}) called {', '.join(tools) or 'no tool'} "
            f"as its model asked ({', '.join(asked) or 'none'}), ran "
            f"{' > '.join(nodes) or 'no node'}, review {result.get('review', 'missing')}, "
            f"and streamed its answer: {replies[-1] if replies else 'nothing'!r}"
        )
