"""`runqueue flower`'s decisions, without starting Flower: when it refuses to start, what
Flower's environment keeps, and its command line."""

from __future__ import annotations

import click
import pytest

from runqueue.cli.flower_commands import (
    check_flower_auth,
    flower_auth,
    flower_command,
    flower_environment,
)
from runqueue.settings import Settings

BROKER = "redis://:broker-secret@redis:6379/0"
DATABASE = "postgresql+psycopg://runqueue:db-secret@db/runqueue"


def test_auth_comes_from_flowers_own_variables():
    assert flower_auth({"FLOWER_BASIC_AUTH": "a:b"}) == "basic"
    assert flower_auth({"FLOWER_AUTH": ".*@example.com"}) is None  # no provider: no login
    oauth = {"FLOWER_AUTH": ".*@example.com", "FLOWER_AUTH_PROVIDER": "flower.views.auth.X"}
    assert flower_auth(oauth) == "oauth"
    assert flower_auth({"FLOWER_BASIC_AUTH": " ", "FLOWER_UNAUTHENTICATED_API": "1"}) is None


@pytest.mark.parametrize(
    ("environ", "address", "no_auth", "refused"),
    [
        ({}, "127.0.0.1", False, "needs authentication"),
        ({"FLOWER_UNAUTHENTICATED_API": "1"}, "127.0.0.1", False, "needs authentication"),
        ({}, "0.0.0.0", True, "not a loopback"),
        ({"FLOWER_BASIC_AUTH": "a:b"}, "0.0.0.0", True, "not a loopback"),
        ({}, "127.0.0.1", True, None),
        ({}, "::1", True, None),
        ({"FLOWER_BASIC_AUTH": "a:b"}, "0.0.0.0", False, None),
    ],
)
def test_flower_refuses_to_start_open(environ, address, no_auth, refused):
    if refused is None:
        check_flower_auth(environ, address, no_auth)
        return
    with pytest.raises(click.ClickException, match=refused):
        check_flower_auth(environ, address, no_auth)


def test_flowers_environment_has_the_broker_and_no_database():
    settings = Settings(broker_url=BROKER, database_url=DATABASE, flower_payloads="on")
    environ = {
        "PATH": "/usr/bin",
        "RUNQUEUE_DATABASE_URL": DATABASE,
        "RUNQUEUE_STREAM_URL": DATABASE,
        "RUNQUEUE_BROKER_URL": "ignored: the settings' broker is given",
        "DATABASE_URL": DATABASE,
        "PGPASSWORD": "db-secret",
        "PGHOST": "db",
        "POSTGRES_PASSWORD": "db-secret",
        "FLOWER_UNAUTHENTICATED_API": "1",
        "FLOWER_BASIC_AUTH": "operator:flower-secret",
        "FLOWER_OAUTH2_SECRET": "oauth-secret",
    }
    env = flower_environment(environ, settings)
    assert "db-secret" not in repr(env)
    assert env["RUNQUEUE_BROKER_URL"] == BROKER
    assert env["RUNQUEUE_FLOWER_PAYLOADS"] == "on"
    assert "FLOWER_UNAUTHENTICATED_API" not in env
    assert env["FLOWER_BASIC_AUTH"] == "operator:flower-secret"  # Flower's own: kept
    assert env["FLOWER_OAUTH2_SECRET"] == "oauth-secret"
    assert env["PATH"] == "/usr/bin"
    assert not [name for name in env if name.startswith("RUNQUEUE_") and "DATABASE" in name]


def test_the_command_line_carries_no_secret_and_shows_the_thread_column():
    settings = Settings(broker_url=BROKER, database_url=DATABASE)
    command = flower_command(settings, 5555, "127.0.0.1")
    assert command[1:6] == ["-m", "celery", "-A", "runqueue.cli.flower_app", "flower"]
    assert "secret" not in " ".join(command)
    columns = next(arg for arg in command if arg.startswith("--tasks_columns="))
    assert ",args," in columns and "exception" in columns and "kwargs" not in columns
    on = flower_command(Settings(broker_url=BROKER, flower_payloads="on"), 5555, "127.0.0.1")
    assert any(arg.endswith(",kwargs,result") for arg in on)


def test_payloads_setting_is_on_or_off():
    from runqueue.errors import SettingsError

    assert Settings.from_env({"RUNQUEUE_FLOWER_PAYLOADS": "on"}).flower_payloads == "on"
    with pytest.raises(SettingsError, match="flower_payloads"):
        Settings(flower_payloads="yes")
