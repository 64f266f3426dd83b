"""Fixtures of the fault suite: private services that tests may stop, and fresh backends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import BACKENDS, require_services
from tests.faults import faultkit
from tests.support import (
    REDIS_HOST,
    REDIS_PORT,
    Backend,
    create_database,
    drop_database,
    make_backend,
)


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[..., str]:
    """Record a FIGURE line on the test's report: the run's summary lists them all (with
    pytest-xdist too, whose workers' output never reaches the terminal), and so does the
    JUnit XML, as properties."""

    def report(scenario: str, **fields: object) -> str:
        line = faultkit.figure(scenario, **fields)
        request.node.user_properties.append(("figure", line))
        return line

    return report


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[faultkit.PrivateRedis]:
    redis = faultkit.PrivateRedis(tmp_path / "redis.log").start()
    yield redis
    redis.stop()


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[faultkit.PrivatePostgres]:
    postgres = faultkit.PrivatePostgres().start()
    yield postgres
    postgres.destroy()


@pytest.fixture
def shared_database() -> Iterator[str]:
    """A fresh database on the shared PostgreSQL (never restarted by these tests)."""
    require_services()
    database_url = create_database(prefix="runqueue_fault")
    yield database_url
    drop_database(database_url)


@pytest.fixture
def shared_broker_url() -> str:
    """A database number of the shared Redis; queues are unique per backend anyway."""
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{faultkit.uuid.uuid4().int % 16}"


@pytest.fixture
def shared_backend(
    tmp_path: Path, shared_database: str, shared_broker_url: str
) -> Iterator[Backend]:
    """Shared PostgreSQL (fresh database) + shared Redis (fresh queue), short leases."""
    backend = faultkit.fault_backend(tmp_path, shared_database, shared_broker_url)
    yield backend
    # Leave nothing behind in the shared Redis: messages nobody consumed, the binding.
    queue = backend.settings.queue  # and its assistants' queues, named from it
    client = redis.Redis.from_url(shared_broker_url)
    keys = [queue, *client.scan_iter(f"{queue}.*"), *client.scan_iter(f"_kombu.binding.{queue}*")]
    client.delete(*keys)
    client.close()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., list]]:
    """Start workers inside a test; every one is stopped by pid afterwards."""
    started: list = []

    def start(settings, count: int = 1, **options) -> list:  # noqa: ANN001
        new = faultkit.start_workers(settings, tmp_path, count, **options)
        started.extend(new)
        return new

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def tcp_proxy() -> Iterator[Callable[[int], faultkit.TcpProxy]]:
    """Start TcpProxy instances inside a test (`tcp_proxy(5432)`); all stopped afterwards."""
    started: list[faultkit.TcpProxy] = []

    def start(target_port: int) -> faultkit.TcpProxy:
        proxy = faultkit.TcpProxy(target_port).start()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


FAULT_SETTINGS = dict(
    app=faultkit.FAULT_APP,
    heartbeat_interval=1.0,
    lease_seconds=4.0,
    fence_margin_seconds=1.0,
    maintenance_interval=0.5,
    republish_after=30.0,
    status_write_timeout=60.0,
)


@pytest.fixture(params=BACKENDS)
def each_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh backend of each kind in turn (embedded, then PostgreSQL + Redis), with the
    fault suite's short leases and the fault app."""
    if request.param != "embedded":
        require_services()
    backend = make_backend(request.param, tmp_path, **FAULT_SETTINGS)
    yield backend
    backend.close()
