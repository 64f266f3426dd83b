"""The demo's enqueue check judged from a journal file alone: an earlier demo's lines in the
same file are not this demo's, and a failure says what was seen (issue 25, item 1)."""

from __future__ import annotations

import uuid
from pathlib import Path
from types import SimpleNamespace

from runqueue.cli.demo_checks import DemoChecks
from runqueue.cli.demo_scenario import ENQUEUED_RUNS, Scenario
from runqueue.journal import record
from runqueue.records import RunStatus


class Judge(DemoChecks):
    """The checks over a scenario whose every run ended in success (no database)."""

    def __init__(self, scenario: Scenario):
        self.scenario = scenario
        self.manager = SimpleNamespace(get=lambda run_id: SimpleNamespace(status=RunStatus.success))


def played(journal_dir: Path, order: list[int], earlier_demo: bool) -> Scenario:
    """A scenario whose enqueued runs started in `order` (indexes into creation order), one
    at a time, with an earlier demo's four runs in the same journal file first if asked."""
    scenario = Scenario("abc123", journal_dir)
    journal = scenario.journal("enqueue")
    if earlier_demo:
        for _ in range(ENQUEUED_RUNS):
            run_id = str(uuid.uuid4())
            for event in ("start", "end"):
                record(journal.path, run_id=run_id, thread_id="demo-old-enqueue", event=event)
    created = [str(uuid.uuid4()) for _ in range(ENQUEUED_RUNS)]
    for index, run_id in enumerate(created):
        scenario.runs[f"enqueue.{index}"] = run_id
    for index in order:
        for event in ("start", "end"):
            thread_id = "demo-abc123-enqueue"
            record(journal.path, run_id=created[index], thread_id=thread_id, event=event)
    return scenario


def test_enqueue_check_ignores_an_earlier_demos_lines_in_the_journal(tmp_path):
    check = Judge(played(tmp_path, [0, 1, 2, 3], earlier_demo=True)).check_enqueue()
    assert check.passed, check.line()
    assert check.line() == (
        "PASS enqueue: fifo=True: 4 runs on one thread started in creation order, one at a "
        "time; statuses success, success, success, success"
    )


def test_enqueue_check_failure_says_the_order_it_saw(tmp_path):
    check = Judge(played(tmp_path, [1, 0, 2, 3], earlier_demo=True)).check_enqueue()
    assert not check.passed
    assert check.line().startswith(
        "FAIL enqueue: fifo=False: 4 runs on one thread started in the order #2, #1, #3, #4 "
        "(created #1..#4), one at a time"
    ), check.line()
    assert "in creation order" not in check.line()
