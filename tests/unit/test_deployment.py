"""docker-compose.yml runs the same commands the test suite runs as real processes."""

from __future__ import annotations

import yaml

from tests.api_support import SERVE_COMMAND
from tests.support import FLOWER_COMMAND, MIGRATE_COMMAND, REPO_ROOT, WORKER_COMMAND

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def command_of(service: str) -> list[str]:
    return COMPOSE["services"][service]["command"]


def test_compose_deploys_broker_database_migrations_fleet_and_flower():
    assert {"postgres", "redis", "migrate", "worker", "flower"} <= set(COMPOSE["services"])


def test_compose_serves_the_http_api_with_keys_required():
    api = COMPOSE["services"]["api"]
    assert command_of("api")[: len(SERVE_COMMAND)] == SERVE_COMMAND
    assert api["environment"]["RUNQUEUE_API_AUTH"] == "on"


def test_compose_commands_are_the_ones_the_tests_start():
    assert command_of("migrate") == MIGRATE_COMMAND
    assert command_of("worker")[: len(WORKER_COMMAND)] == WORKER_COMMAND
    assert command_of("flower")[: len(FLOWER_COMMAND)] == FLOWER_COMMAND


def test_fleet_waits_for_migrations_and_talks_to_postgres_and_redis():
    worker = COMPOSE["services"]["worker"]
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    env = worker["environment"]
    assert env["RUNQUEUE_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert env["RUNQUEUE_BROKER_URL"].startswith("redis://")
    assert "container_name" not in worker, "a fixed name would stop --scale worker=N"
