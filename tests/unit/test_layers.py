"""The layering is a contract, checked here: import-linter runs the contracts in pyproject.toml
(the store imports no worker, CLI, API or registry; the worker no CLI or API; nothing imports
the CLI; no import cycles between packages), and every part of runqueue is in a layer."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from importlinter import configuration
from importlinter.application import use_cases

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def test_the_import_contracts_are_kept(capsys):
    # The use case, not importlinter.cli: the CLI's dictConfig disables every other logger.
    configuration.configure()
    kept = use_cases.lint_imports(
        config_filename=str(ROOT / "pyproject.toml"), cache_dir=None, no_logo=True
    )
    assert kept, capsys.readouterr().out


def test_the_contracts_say_what_the_architecture_promises():
    by_type = {}
    for contract in CONTRACTS["contracts"]:
        by_type.setdefault(contract["type"], []).append(contract)
    forbidden = {
        source: set(contract["forbidden_modules"])
        for contract in by_type["forbidden"]
        for source in contract["source_modules"]
    }
    assert {"runqueue.worker", "runqueue.cli", "runqueue.api", "runqueue.registry"} <= forbidden[
        "runqueue.store"
    ]
    assert {"runqueue.cli", "runqueue.api"} <= forbidden["runqueue.worker"]
    (protected,) = by_type["protected"]
    assert protected["protected_modules"] == ["runqueue.cli"]
    assert protected["allowed_importers"] == ["runqueue.__main__"]
    (acyclic,) = by_type["acyclic_siblings"]
    assert "runqueue" in acyclic["ancestors"]


def test_only_the_store_may_import_sql_libraries():
    """Every part of runqueue but the store is a source of the contract that forbids
    SQLAlchemy, psycopg and Alembic (a new module is covered the day it is added)."""
    (sql,) = [
        c
        for c in CONTRACTS["contracts"]
        if c["type"] == "forbidden" and "sqlalchemy" in c["forbidden_modules"]
    ]
    assert set(sql["forbidden_modules"]) == {"sqlalchemy", "psycopg", "alembic"}
    assert set(sql["source_modules"]) == _parts_of_runqueue() - {"runqueue.store"}


def _parts_of_runqueue() -> set[str]:
    package = ROOT / "runqueue"
    return {
        f"runqueue.{path.stem}"
        for path in package.iterdir()
        if (path.suffix == ".py" and path.stem not in ("__init__", "__main__"))
        or (path.is_dir() and (path / "__init__.py").exists())
    }


def test_every_module_and_package_of_runqueue_is_in_a_layer():
    (layers,) = [
        c for c in CONTRACTS["contracts"] if c["type"] == "layers" and "containers" not in c
    ]
    layered = {name.strip() for layer in layers["layers"] for name in layer.split("|")}
    parts = _parts_of_runqueue()
    assert parts == layered, f"not in a layer: {sorted(parts - layered)}"


def test_the_rest_of_runqueue_uses_the_store_by_its_public_names():
    """`from runqueue.store import RunStore`, never a module inside the store: what the store
    exports is its `__init__`'s list, and the rooms inside can move."""
    inside = re.compile(r"^\s*(from runqueue\.store\.\w+|import runqueue\.store\.\w+)", re.M)
    package = ROOT / "runqueue"
    offenders = [
        str(path.relative_to(ROOT))
        for path in package.rglob("*.py")
        if "store" not in path.relative_to(package).parts[:1] and inside.search(path.read_text())
    ]
    assert offenders == []
