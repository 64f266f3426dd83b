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
