"""docs/architecture.md matches the code: every status write it names exists in exactly one
place, and every statement in runqueue/store/ that writes runs.status is in its table."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
PACKAGE = ROOT / "runqueue"
# RunStore is composed of statement groups, one module each; the doc names them RunStore.*.
STORE_MODULES = (
    "store/decisions.py",
    "store/claims.py",
    "store/outbox.py",
    "store/transactions.py",
)
STORE_CLASSES = {"RunStore", "ExecutionStatements", "OutboxStatements", "StoreBase"}


def status_write_table() -> list[list[str]]:
    text = DOC.read_text()
    section = text.split("<!-- status-writes -->", 1)[1].split("<!-- /status-writes -->", 1)[0]
    rows = [line for line in section.strip().splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def code_names(cell: str) -> list[str]:
    """Backticked dotted names: `RunStore.finish_run`, `maintenance.reap`."""
    return [name for name in re.findall(r"`([A-Za-z_][\w.]*)`", cell) if "." in name]


def definitions() -> list[str]:
    """Every function in the package as module.Class.function (or module.function)."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        module = path.stem
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                found.append(f"{module}.{node.name}")
            elif isinstance(node, ast.ClassDef):
                owner = "RunStore" if node.name in STORE_CLASSES else node.name
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        found.append(f"{module}.{owner}.{item.name}")
    return found


def _on_runs(node: ast.expr) -> bool:
    """`Run` or `Run.__table__`: the runs table, as the ORM entity or as the Core table."""
    if isinstance(node, ast.Attribute) and node.attr == "__table__":
        node = node.value
    return isinstance(node, ast.Name) and node.id == "Run"


def _runs_statement(node: ast.AST) -> bool:
    """An insert(...) or update(...) call on the runs table, anywhere inside `node`."""
    return any(
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Name)
        and call.func.id in ("insert", "update")
        and call.args
        and _on_runs(call.args[0])
        for call in ast.walk(node)
    )


def store_status_writers() -> set[str]:
    """RunStore methods with an INSERT or UPDATE on `runs` that sets `status`
    (.values(status=...), or a dict(status=...) handed to .values or to execute with a
    statement built once at module level, like INSERT_RUN)."""
    trees = [ast.parse((PACKAGE / module).read_text()) for module in STORE_MODULES]
    prebuilt = {
        target.id
        for tree in trees
        for node in tree.body
        if isinstance(node, ast.Assign) and _runs_statement(node.value)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    methods = [
        method
        for tree in trees
        for node in tree.body
        if isinstance(node, ast.ClassDef) and node.name in STORE_CLASSES
        for method in node.body
    ]
    writers = set()
    for method in methods:
        if not isinstance(method, ast.FunctionDef):
            continue
        calls = [node for node in ast.walk(method) if isinstance(node, ast.Call)]
        on_runs = _runs_statement(method) or any(
            isinstance(node, ast.Name) and node.id in prebuilt for node in ast.walk(method)
        )
        if not on_runs:
            continue
        for node in calls:
            if any(k.arg == "status" for k in node.keywords):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
                if name in ("values", "dict"):
                    writers.add(f"RunStore.{method.name}")
    return writers


def test_table_is_not_empty():
    rows = status_write_table()
    assert len(rows) >= 8
    assert all(len(row) == 3 for row in rows), rows


def test_every_named_function_exists_exactly_once():
    defined = definitions()
    named = {name for row in status_write_table() for cell in row[1:] for name in code_names(cell)}
    assert "RunStore.finish_run" in named and "maintenance.reap" in named
    for name in sorted(named):
        matches = [d for d in defined if d == name or d.endswith("." + name)]
        assert len(matches) == 1, f"{name} is defined {len(matches)} times: {matches}"


def test_every_status_write_in_store_is_documented():
    documented = {
        name for row in status_write_table() for name in code_names(row[1]) if "RunStore" in name
    }
    writers = store_status_writers()
    assert writers, "found no status writes in the store: the parser is broken"
    assert writers <= documented, f"undocumented status writes: {sorted(writers - documented)}"
    # Writes named in the SQL column must really write a status (not just exist).
    wrappers = {"RunStore.claim_run", "RunStore.cancel_run"}  # named 'via' their inner write
    assert documented - wrappers <= writers, sorted(documented - wrappers - writers)


def test_status_column_is_written_only_in_store():
    """Only the store modules issue the statements; everything else goes through it."""
    for path in PACKAGE.rglob("*.py"):
        if str(path.relative_to(PACKAGE)) in STORE_MODULES or "migrations" in path.parts:
            continue
        source = path.read_text()
        assert not re.search(r"update\(Run\)[^\n]*\n?[^\n]*status=", source), path


def test_the_invariant_index_the_doc_names_exists():
    doc = DOC.read_text()
    models = (PACKAGE / "store" / "models.py").read_text()
    assert "runs_one_running_per_thread" in doc
    assert '"runs_one_running_per_thread"' in models
    assert "status = 'running'" in models


def layer_map() -> str:
    """The map of folders and modules under "## Layers" (its first code block)."""
    section = DOC.read_text().split("## Layers", 1)[1]
    return section.split("```", 2)[1]


def test_the_layer_map_names_every_module_and_only_modules_that_exist():
    """Each module of runqueue (migrations aside) is named in the map under its own folder's
    entry, and every module the map names exists: a room added, moved or renamed without
    the map fails here."""
    entries: dict[str, str] = {}  # top-level entry (folder/ or module.py) -> its text
    current = None
    for line in layer_map().splitlines():
        head = re.match(r"  (\S+)", line)
        if head and not line.startswith("   "):
            current = head.group(1)
        if current is not None:
            entries[current] = entries.get(current, "") + line + "\n"
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).parts
        if "migrations" in parts or path.name in ("__init__.py", "__main__.py"):
            continue
        entry = f"{parts[0]}/" if len(parts) > 1 else None
        text = entries.get(entry, "") if entry else layer_map()
        inner = "/".join(parts[1:]) if len(parts) > 1 else path.name
        if not re.search(rf"(?<![\w/]){re.escape(inner)}\b", text):
            missing.append(str(path.relative_to(ROOT)))
    assert missing == [], f"modules the map does not name: {missing}"
    named = set(re.findall(r"(?<![\w/.])([a-z_]+\.py)\b", layer_map()))
    existing = {p.name for p in PACKAGE.rglob("*.py")} | {
        p.name for p in (ROOT / "workers").rglob("*.py")
    }
    assert named <= existing, f"the map names modules that do not exist: {sorted(named - existing)}"
