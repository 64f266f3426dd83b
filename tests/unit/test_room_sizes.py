"""Rooms a reader can hold in mind: no module of runqueue over MAX_MODULE_LINES lines and no
function over MAX_FUNCTION_LINES, migrations aside (a migration is a frozen snapshot, read
once).

The bounds: a module of ~450 lines is about what one reads in a sitting and still names in
one phrase; a function of ~80 lines fits on one screen with its docstring. When the layout
was split by job (worker attempt, registry, demo, API runs) every room fell well under both;
a failure here is the moment to split a room again, not to raise the bound."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "runqueue"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


def test_no_module_is_over_the_bound():
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in modules()}
    over = {name: lines for name, lines in sizes.items() if lines > MAX_MODULE_LINES}
    assert not over, f"modules over {MAX_MODULE_LINES} lines: {over}"


def test_no_function_is_over_the_bound():
    over = {}
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    over[f"{path.relative_to(PACKAGE)}:{node.name}"] = lines
    assert not over, f"functions over {MAX_FUNCTION_LINES} lines: {over}"
