"""Every multitask strategy is in every place docs/architecture.md, "Adding a strategy", lists:
a strategy added to the enum alone fails here, naming the place it lacks."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from runqueue.api.schemas import RunCreate
from runqueue.records import AbortAction, MultitaskStrategy
from runqueue.store.functions import CreateOutcome
from runqueue.store.models import Run
from runqueue.store.strategies import ON_BUSY_THREAD, OnBusyThread

ROOT = Path(__file__).resolve().parents[2]
SQL = (ROOT / "runqueue" / "store" / "sql" / "transitions.sql").read_text()
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()
STRATEGIES = list(MultitaskStrategy)
# What runqueue_create_run answers for each decision of the store, when the thread is busy.
ANSWER = {
    OnBusyThread.refuse: CreateOutcome.conflict,
    OnBusyThread.cancel: CreateOutcome.cancel_first,
    OnBusyThread.wait: CreateOutcome.created,
}


def section(text: str, heading: str) -> str:
    """The text under a markdown heading, up to the next heading of any level."""
    after = text.split(f"{heading}\n", 1)[1]
    return re.split(r"^#{1,6} ", after, maxsplit=1, flags=re.MULTILINE)[0]


def table_strategies(text: str) -> set[str]:
    """The backticked name that starts each body row of the markdown table(s) in `text`."""
    rows = [line for line in text.splitlines() if line.startswith("|")]
    body = [row for row in rows if not re.match(r"\|\s*-", row)][1:]  # the header left out
    return {match.group(1) for row in body if (match := re.match(r"\|\s*`(\w+)`", row))}


def create_function_code() -> str:
    """runqueue_create_run's body, between its $$, without comments."""
    body = SQL.split("CREATE FUNCTION runqueue_create_run(", 1)[1].split("$$", 2)[1]
    return re.sub(r"--[^\n]*", "", body)


def strategies_in(module: Path, name: str) -> set[str]:
    """The MultitaskStrategy members that module-level `name` names."""
    assigned = {
        target.id: node.value
        for node in ast.parse(module.read_text()).body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }
    return {
        node.attr
        for node in ast.walk(assigned[name])
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "MultitaskStrategy"
    }


@pytest.mark.parametrize("strategy", STRATEGIES, ids=str)
def test_the_enum_value_fits_its_column(strategy):
    assert len(strategy.value) <= Run.__table__.c.multitask_strategy.type.length


@pytest.mark.parametrize("strategy", STRATEGIES, ids=str)
def test_the_store_decides_it(strategy):
    assert strategy in ON_BUSY_THREAD, "runqueue/store/strategies.py: no ON_BUSY_THREAD entry"
    if ON_BUSY_THREAD[strategy] is OnBusyThread.cancel:
        assert strategy.value in {action.value for action in AbortAction}, "no AbortAction"


@pytest.mark.parametrize("strategy", STRATEGIES, ids=str)
def test_the_sql_decides_it(strategy):
    listed = dict(re.findall(r"^--\s+(\w+)\s+->\s+(\w+)", SQL, flags=re.MULTILINE))
    assert strategy.value in listed, "transitions.sql: not in the list above runqueue_create_run"
    assert strategy in ON_BUSY_THREAD, "runqueue/store/strategies.py: no ON_BUSY_THREAD entry"
    answer = ANSWER[ON_BUSY_THREAD[strategy]]
    assert listed[strategy.value] == answer.value
    if answer is not CreateOutcome.created:  # the function lets only `created` through
        assert f"'{strategy.value}'" in create_function_code(), "runqueue_create_run ignores it"


@pytest.mark.parametrize("strategy", STRATEGIES, ids=str)
def test_the_api_accepts_it(strategy):
    body = RunCreate(assistant_id="echo", multitask_strategy=strategy.value)
    assert body.multitask_strategy == strategy.value
    schema = RunCreate.model_json_schema()["properties"]["multitask_strategy"]
    assert strategy.value in schema["enum"]


def test_the_api_refuses_any_other_value():
    with pytest.raises(ValidationError):
        RunCreate(assistant_id="echo", multitask_strategy="overtake")


@pytest.mark.parametrize("strategy", STRATEGIES, ids=str)
def test_the_docs_list_it(strategy):
    in_sql = section(ARCHITECTURE, "## Strategies, in SQL")
    assert strategy.value in table_strategies(in_sql), "docs/architecture.md"
    readme = section((ROOT / "README.md").read_text(), "## Strategies")
    assert strategy.value in table_strategies(readme), "README.md"
    operations = (ROOT / "docs" / "operations.md").read_text()
    choices = re.search(r"`--strategy` \(([^)]*)\)", operations)
    assert choices and strategy.value in choices.group(1).split(", "), "docs/operations.md"


@pytest.mark.parametrize("strategy", STRATEGIES, ids=str)
def test_the_tests_run_it(strategy):
    behaviour = ast.parse((ROOT / "tests" / "integration" / "test_strategies.py").read_text())
    names = [node.name for node in behaviour.body if isinstance(node, ast.FunctionDef)]
    assert any(name.startswith(f"test_{strategy.value}_") for name in names), (
        f"tests/integration/test_strategies.py: no test_{strategy.value}_* test"
    )
    replayed = strategies_in(ROOT / "tests" / "integration" / "test_round_trips.py", "SCRIPT")
    assert strategy.name in replayed, "test_round_trips.py: not in the replayed SCRIPT"


def test_the_section_names_places_that_exist():
    places = section(ARCHITECTURE, "### Adding a strategy")
    paths = re.findall(r"`([\w./]+\.(?:py|sql|md))`", places)
    assert "runqueue/store/strategies.py" in paths and Path(__file__).name in " ".join(paths)
    assert [path for path in paths if not (ROOT / path).exists()] == []
