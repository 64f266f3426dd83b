"""The outcome texts the SQL functions answer are exactly the store's enums: CreateOutcome
for runqueue_create_run, ClaimOutcome for runqueue_claim_run (store/sql/transitions.sql)."""

from __future__ import annotations

import re
from pathlib import Path

from runqueue.store.claims import ClaimOutcome
from runqueue.store.functions import CreateOutcome

SQL = (Path(__file__).resolve().parents[2] / "runqueue/store/sql/transitions.sql").read_text()


def code_of(function: str) -> str:
    """The function's body, between its $$, without comments."""
    body = SQL.split(f"CREATE FUNCTION {function}(", 1)[1].split("$$", 2)[1]
    return re.sub(r"--[^\n]*", "", body)


def test_runqueue_create_run_answers_create_outcomes():
    answers = re.findall(r"RETURN QUERY SELECT '(\w+)'", code_of("runqueue_create_run"))
    assert set(answers) == {outcome.value for outcome in CreateOutcome}


def test_runqueue_claim_run_answers_claim_outcomes():
    """`claimed`, or the CASE that says why not."""
    code = code_of("runqueue_claim_run")
    answers = re.findall(r"(?:RETURN QUERY SELECT|THEN|ELSE)\s+'(\w+)'", code)
    assert set(answers) == {outcome.value for outcome in ClaimOutcome}
