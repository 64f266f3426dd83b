"""docker-compose.yml deploys one image, healthy services, a replicated fleet and an
authenticated Flower, with no default secrets; every command in it is one the test suite runs
as a real process; the image installs pinned dependencies."""

from __future__ import annotations

import re
from importlib import metadata

import yaml

from tests.api_support import SERVE_COMMAND
from tests.support import (
    FLOWER_COMMAND,
    HEALTH_COMMAND,
    MIGRATE_COMMAND,
    REPO_ROOT,
    WORKER_COMMAND,
)

COMPOSE_TEXT = (REPO_ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE["services"]
RUNQUEUE_SERVICES = ("migrate", "worker", "flower", "api")
VARIABLE = re.compile(r"\$\{([A-Z_]+)(:?[-?])?([^}]*)\}")


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def command_of(service: str) -> list[str]:
    return SERVICES[service]["command"]


def health_check_of(service: str) -> list[str]:
    test = SERVICES[service]["healthcheck"]["test"]
    assert test[0] == "CMD", test  # no shell: the command the tests run, as it is
    return test[1:]


def test_compose_deploys_broker_database_migrations_fleet_flower_and_api():
    assert set(SERVICES) == {"postgres", "redis", *RUNQUEUE_SERVICES}


def test_one_image_is_built_once_and_reused_by_every_runqueue_service():
    built = [name for name, service in SERVICES.items() if "build" in service]
    assert built == ["migrate"]
    images = {SERVICES[name]["image"] for name in RUNQUEUE_SERVICES}
    assert len(images) == 1
    for name in RUNQUEUE_SERVICES:
        if name not in built:
            assert SERVICES[name]["pull_policy"] == "never", name  # never pulled: built here


def test_every_service_has_a_health_check():
    for name, service in SERVICES.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"


def test_runqueue_health_checks_are_the_command_the_tests_run():
    for name in RUNQUEUE_SERVICES:
        assert health_check_of(name)[: len(HEALTH_COMMAND)] == HEALTH_COMMAND, name
    worker_name = [a for a in command_of("worker") if a.startswith("--hostname=")][0]
    assert health_check_of("worker")[-2:] == ["--worker", worker_name.split("=", 1)[1]]
    assert health_check_of("api")[-1].endswith("/ok")
    assert health_check_of("flower")[-1].endswith("/healthcheck")


def test_the_fleet_is_replicated_with_a_unique_node_name_each():
    worker = SERVICES["worker"]
    assert worker["deploy"]["replicas"] >= 2
    assert "container_name" not in worker, "a fixed name would stop --scale worker=N"
    hostname = [arg for arg in command_of("worker") if arg.startswith("--hostname=")]
    assert hostname and "%h" in hostname[0], "replicas need distinct Celery node names"


def test_a_deploy_gives_running_runs_their_grace_before_the_kill():
    worker = SERVICES["worker"]
    grace = re.search(r":-(\d+)", worker["environment"]["RUNQUEUE_SHUTDOWN_GRACE_SECONDS"])
    stop = re.fullmatch(r"(\d+)s", worker["stop_grace_period"])
    assert grace and stop
    assert int(stop.group(1)) >= int(grace.group(1)) + 20


def test_compose_commands_are_the_ones_the_tests_start():
    assert command_of("migrate") == MIGRATE_COMMAND
    assert command_of("worker")[: len(WORKER_COMMAND)] == WORKER_COMMAND
    assert command_of("flower")[: len(FLOWER_COMMAND)] == FLOWER_COMMAND
    assert command_of("api")[: len(SERVE_COMMAND)] == SERVE_COMMAND


def test_flower_requires_auth_and_is_published_on_loopback_only():
    flower = SERVICES["flower"]
    env = flower["environment"]
    assert "FLOWER_UNAUTHENTICATED_API" not in env
    assert "--no-auth" not in command_of("flower")
    assert env["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    assert flower["ports"] and all(port.startswith("127.0.0.1:") for port in flower["ports"])
    assert "RUNQUEUE_DATABASE_URL" not in env, "Flower never uses the database"


def test_no_secret_has_a_default_and_redis_requires_a_password():
    for match in VARIABLE.finditer(COMPOSE_TEXT):
        name, operator = match.group(1), match.group(2)
        if "PASSWORD" in name or "AUTH" in name:
            assert operator == ":?", f"${{{name}}} must be required, never defaulted"
    assert "--requirepass" in SERVICES["redis"]["command"]
    env = SERVICES["worker"]["environment"]
    assert env["RUNQUEUE_BROKER_URL"].startswith("redis://:${REDIS_PASSWORD:?")
    assert ":${POSTGRES_PASSWORD:?" in env["RUNQUEUE_DATABASE_URL"]


def test_every_variable_is_in_env_example_without_secrets():
    example = (REPO_ROOT / ".env.example").read_text()
    assigned = dict(
        line.split("=", 1) for line in example.splitlines() if line and not line.startswith("#")
    )
    used = {match.group(1) for match in VARIABLE.finditer(COMPOSE_TEXT)}
    assert used <= set(assigned), used - set(assigned)
    for name, value in assigned.items():
        if "PASSWORD" in name or "AUTH" in name:
            assert value == "", f"{name} must not be committed"
    assert ".env" in (REPO_ROOT / ".gitignore").read_text().split()


def test_the_fleet_serves_assistants_named_by_a_setting_without_the_journal_option():
    env = SERVICES["worker"]["environment"]
    assert env["RUNQUEUE_IMPORTS"] == "${RUNQUEUE_IMPORTS:-workers.assistants:register}"


def test_the_fleet_waits_for_migrations_and_talks_to_postgres_and_redis():
    worker = SERVICES["worker"]
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    env = worker["environment"]
    assert env["RUNQUEUE_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert env["RUNQUEUE_BROKER_URL"].startswith("redis://")


def test_the_image_installs_pinned_versions_that_match_what_the_tests_ran():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "-c constraints.txt" in dockerfile
    pins = dict(
        line.split("==", 1)
        for line in (REPO_ROOT / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    pinned = {normalized(name) for name in pins}
    for requirement in metadata.requires("runqueue") or []:
        name, _, marker = requirement.partition(";")
        if "extra" in marker and not re.search(r'extra == "(langgraph|test)"', marker):
            continue  # extras the image and the tests do not install (bench)
        name = normalized(re.match(r"[A-Za-z0-9_.-]+", name).group(0))
        assert name == "runqueue" or name in pinned, f"{name} is not pinned"
    stale = {
        name: (pinned, metadata.version(name))
        for name, pinned in pins.items()
        if metadata.version(name) != pinned
    }
    assert not stale, (
        f"constraints.txt is stale (pinned, installed): {stale}; run scripts/lock-constraints"
    )
