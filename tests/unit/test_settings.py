"""Settings from the environment: embedded defaults, overrides, errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runqueue import Settings
from runqueue.errors import SettingsError
from runqueue.settings import redact_url


def test_nothing_set_means_embedded_sqlite_and_filesystem_broker(tmp_path):
    settings = Settings.from_env({"RUNQUEUE_DATA_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'runqueue.sqlite3'}"
    assert settings.broker_url == "filesystem://"
    assert settings.is_sqlite and settings.is_embedded_broker


def test_environment_is_typed_and_overrides_win():
    settings = Settings.from_env(
        {
            "RUNQUEUE_DATABASE_URL": "postgresql+psycopg://db/runs",
            "RUNQUEUE_BROKER_URL": "redis://cache:6379/0",
            "RUNQUEUE_LEASE_SECONDS": "45",
            "RUNQUEUE_MAX_PAYLOAD_BYTES": "2048",
        },
        queue="fleet",
    )
    assert settings.lease_seconds == 45.0 and settings.max_payload_bytes == 2048
    assert settings.queue == "fleet"
    assert not settings.is_sqlite and not settings.is_embedded_broker
    assert isinstance(settings.data_dir, Path)


@pytest.mark.parametrize(
    "environ",
    [
        {"RUNQUEUE_LEASE_SECONDS": "soon"},
        {"RUNQUEUE_LEASE_SECONDS": "5", "RUNQUEUE_HEARTBEAT_INTERVAL": "10"},
        {"RUNQUEUE_MAX_PAYLOAD_BYTES": "0"},
        {"RUNQUEUE_API_MAX_STREAMS_PER_USER": "0"},
    ],
)
def test_bad_settings_are_a_clear_error(environ):
    with pytest.raises(SettingsError):
        Settings.from_env(environ)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://user:s3cret@db:5432/x", "postgresql://user:***@db:5432/x"),
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("sqlite:////tmp/x.sqlite3", "sqlite:////tmp/x.sqlite3"),
        (
            "sentinel://:s3cret@h1:26379;sentinel://:s3cret@h2:26379",
            "sentinel://:***@h1:26379;sentinel://:***@h2:26379",
        ),
        ("redis://user:s3cret@cache:port/0", "redis://user:***@cache:port/0"),
        ("postgresql://u:s3cret@db/x?sslmode=require", "postgresql://u:***@db/x?sslmode=require"),
        ("postgresql+psycopg://u:s3/cret@db/x", "postgresql+psycopg://u:***@db/x"),
        ("postgresql+psycopg://u@srv:s3cret@db/x", "postgresql+psycopg://u@srv:***@db/x"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("amqp://guest:s3cret@mq:5672//", "amqp://guest:***@mq:5672//"),
    ],
)
def test_redact_url_hides_passwords(url, shown):
    assert redact_url(url) == shown
    assert "s3cret" not in redact_url(url)


def test_environment_round_trips_every_setting(tmp_path):
    settings = Settings(
        data_dir=tmp_path,
        queue="fleet",
        lease_seconds=17.5,
        fence_margin_seconds=2.5,
        max_payload_bytes=7,
    )
    assert Settings.from_env(settings.environment()) == settings


def test_shutdown_grace_and_ready_timeout_are_read_and_checked():
    settings = Settings.from_env(
        {"RUNQUEUE_SHUTDOWN_GRACE_SECONDS": "45", "RUNQUEUE_READY_TIMEOUT": "7.5"}
    )
    assert settings.shutdown_grace_seconds == 45.0 and settings.ready_timeout == 7.5
    assert Settings(shutdown_grace_seconds=0).shutdown_grace_seconds == 0  # hand back at once
    defaults = Settings()
    assert defaults.shutdown_grace_seconds == 20.0 and defaults.ready_timeout == 30.0
    for bad in ({"shutdown_grace_seconds": -1}, {"shutdown_grace_seconds": float("inf")},
                {"shutdown_grace_seconds": float("nan")}, {"ready_timeout": 0},
                {"ready_timeout": float("nan")}):  # fmt: skip
        with pytest.raises(SettingsError, match=next(iter(bad))):
            Settings(**bad)
    with pytest.raises(SettingsError, match="RUNQUEUE_READY_TIMEOUT"):
        Settings.from_env({"RUNQUEUE_READY_TIMEOUT": "soon"})


def test_every_setting_is_in_the_readme_and_env_names_are_real():
    """README's Configuration table names every RUNQUEUE_* variable, and only real ones."""
    from dataclasses import fields

    from tests.support import REPO_ROOT

    text = (REPO_ROOT / "README.md").read_text()
    table = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `RUNQUEUE_([A-Z_]+)`", table, flags=re.M))
    settings = {field.name.upper() for field in fields(Settings)}
    assert documented == settings, (settings - documented, documented - settings)


def test_api_limits_are_read_and_checked():
    defaults = Settings()
    assert defaults.api_max_header_bytes == 16384
    assert defaults.api_header_timeout_seconds == 10.0
    assert defaults.api_body_timeout_seconds == 30.0
    assert defaults.api_trusted_proxies == ""
    settings = Settings.from_env(
        {
            "RUNQUEUE_API_MAX_HEADER_BYTES": "8192",
            "RUNQUEUE_API_HEADER_TIMEOUT_SECONDS": "2.5",
            "RUNQUEUE_API_BODY_TIMEOUT_SECONDS": "7",
            "RUNQUEUE_API_TRUSTED_PROXIES": "10.0.0.5,172.16.0.0/12,::1",
        }
    )
    assert settings.api_max_header_bytes == 8192
    assert settings.api_header_timeout_seconds == 2.5 and settings.api_body_timeout_seconds == 7.0
    assert settings.api_trusted_proxies == "10.0.0.5,172.16.0.0/12,::1"
    for bad in ({"api_max_header_bytes": 0}, {"api_max_header_bytes": -1},
                {"api_header_timeout_seconds": 0}, {"api_header_timeout_seconds": -2},
                {"api_header_timeout_seconds": float("inf")},
                {"api_header_timeout_seconds": float("nan")},
                {"api_body_timeout_seconds": 0}, {"api_body_timeout_seconds": float("inf")},
                {"api_body_timeout_seconds": float("nan")}):  # fmt: skip
        with pytest.raises(SettingsError, match=next(iter(bad))):
            Settings(**bad)
    for proxies in ("*", "proxy.internal", "10.0.0.1/8", "10.0.0.0/33", "[::1]"):
        with pytest.raises(SettingsError, match="api_trusted_proxies"):
            Settings(api_trusted_proxies=proxies)
    with pytest.raises(SettingsError, match="RUNQUEUE_API_MAX_HEADER_BYTES"):
        Settings.from_env({"RUNQUEUE_API_MAX_HEADER_BYTES": "16k"})


def test_the_hostile_input_bounds_cannot_be_turned_off():
    """A poison run is always stopped, and JSON is never allowed deep enough to break
    pickling: no value turns either bound off, silently or not."""
    settings = Settings.from_env(
        {"RUNQUEUE_MAX_WORKER_LOSSES": "5", "RUNQUEUE_MAX_JSON_DEPTH": "50"}
    )
    assert (settings.max_worker_losses, settings.max_json_depth) == (5, 50)
    assert (Settings().max_worker_losses, Settings().max_json_depth) == (3, 100)
    for bad in (
        {"max_worker_losses": 0},
        {"max_worker_losses": -1},
        {"max_worker_losses": 101},
        {"max_json_depth": 0},
        {"max_json_depth": 201},
        {"log_payloads": "yes"},
        {"api_max_runs_in_flight_per_user": 0},
    ):
        with pytest.raises(SettingsError, match=next(iter(bad))):
            Settings(**bad)
