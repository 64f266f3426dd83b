"""Fixtures on the real services. A missing service fails the run; it is never skipped."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from runqueue.journal import Journal
from tests.support import (
    REDIS_HOST,
    REDIS_PORT,
    Backend,
    RunFactory,
    WorkerProcess,
    make_backend,
    service_reachable,
)

BACKENDS = ["embedded", "postgres_redis"]
SOAK = Path(__file__).parent / "soak"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """tests/soak runs only when named (`pytest tests/soak`): 20 minutes, on demand."""
    if collection_path != SOAK:
        return None
    named = [Path(arg.split("::")[0]).resolve() for arg in config.args]
    return not any(path == SOAK or SOAK in path.parents for path in named)


def require_services() -> None:
    missing = [
        name
        for name, port in (("PostgreSQL", 5432), ("Redis", REDIS_PORT))
        if not service_reachable(REDIS_HOST, port)
    ]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not reachable on 127.0.0.1 (CI={os.environ.get('CI')}); "
            "start the services as the README says",
            pytrace=False,
        )


@pytest.fixture(scope="module", params=BACKENDS)
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    """A fresh database and broker for this module, on each backend in turn."""
    if request.param != "embedded":
        require_services()
    backend = make_backend(request.param, tmp_path_factory.mktemp(request.param))
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def worker(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """A prefork worker on the module's backend."""
    log = Path(tmp_path_factory.mktemp("worker")) / "worker.log"
    process = WorkerProcess(backend.settings, log).start()
    yield process
    process.stop()


@pytest.fixture
def start_worker(backend: Backend, tmp_path: Path) -> Iterator:
    """Start extra workers inside a test; all are stopped afterwards."""
    started: list[WorkerProcess] = []

    def start(**options) -> WorkerProcess:
        process = WorkerProcess(backend.settings, tmp_path / f"worker{len(started)}.log", **options)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


@pytest.fixture(scope="module")
def manager(backend: Backend):
    return backend.manager()


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    """This test's journal: what the example assistants recorded they executed."""
    return Journal(tmp_path / "journal.jsonl")


@pytest.fixture
def run_factory(manager, journal: Journal) -> RunFactory:  # noqa: ANN001
    """Creates `steps` runs that record into this test's journal."""
    return RunFactory(manager, journal)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by folder, so `-m "not integration and not faults"` runs the fast ones."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "integration" in parts:
            item.add_marker(pytest.mark.integration)
        elif "faults" in parts:
            item.add_marker(pytest.mark.faults)


FIGURES: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect the FIGURE lines the fault tests recorded (the `report` fixture)."""
    if report.when == "call":
        FIGURES.extend(value for name, value in report.user_properties if name == "figure")


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001
    """Every FIGURE line of the run, in one section (docs/reliability.md quotes them)."""
    if FIGURES:
        terminalreporter.section("figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
