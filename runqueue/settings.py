"""One typed settings object, read from RUNQUEUE_* environment variables.

With nothing set, runqueue runs embedded: a SQLite file and kombu's filesystem broker
under one data directory, so no server is needed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from runqueue.errors import SettingsError

ENV_PREFIX = "RUNQUEUE_"
REDIS_SCHEMES = ("redis://", "rediss://")


def _default_data_dir() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "runqueue"


@dataclass(frozen=True)
class Settings:
    """Everything runqueue needs to find its database, broker and assistants."""

    data_dir: Path = field(default_factory=_default_data_dir)
    database_url: str = ""  # empty: sqlite file under data_dir
    broker_url: str = ""  # empty: filesystem broker under data_dir
    app: str = "workers.app:app"  # the Celery app that registers the assistants
    # The assistants to serve, beyond the app's own: comma-separated "module:function"
    # (called with the app, registers its assistants) or "module" (Celery's `imports`).
    imports: str = ""
    queue: str = "runqueue"  # the Celery queue runs are published to
    default_assistant: str = ""  # used when create() gets no assistant_id
    max_payload_bytes: int = 1024 * 1024  # kwargs/metadata size limit
    heartbeat_interval: float = 10.0  # seconds between lease renewals of a running run
    lease_seconds: float = 30.0  # a running run whose lease is older is reaped
    # A run whose worker could not renew its lease for lease_seconds - this stops itself,
    # before any other worker may reap it (docs/reliability.md, "Self-fencing").
    fence_margin_seconds: float = 5.0
    republish_after: float = 30.0  # a queued run not claimed for this long is published again
    maintenance_interval: float = 2.0  # how often a worker relays/reaps
    filesystem_polling_interval: float = 0.1  # seconds, filesystem broker only
    status_write_timeout: float = 120.0  # a worker retries a status write this long (backoff)
    broker_visibility_timeout: float = 3600.0  # redis: an unacked run is redelivered after this
    stream_url: str = ""  # the run stream's store; empty: the broker if Redis, else the database
    stream_retention_seconds: float = 600.0  # a run's stream is kept this long after its end
    stream_max_events: int = 10_000  # per run; older events are trimmed (readers get `gap`)
    stream_max_event_bytes: int = 1024 * 1024  # one emitted event's JSON data, at most
    stream_poll_interval: float = 0.05  # seconds; the database transport's readers poll
    database_pool_size: int = 15  # PostgreSQL connections a process opens at most, kept open
    api_auth: str = "on"  # HTTP API keys required; "off" only on a loopback address
    api_threads: int = 16  # the HTTP API's threads for blocking database calls
    flower_payloads: str = "off"  # "on": Flower shows runs' kwargs and results too
    shutdown_grace_seconds: float = 20.0  # SIGTERM: running runs may finish this long
    ready_timeout: float = 30.0  # a starting worker waits this long for database and broker

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser())
        if not self.database_url:
            url = f"sqlite:///{self.data_dir / 'runqueue.sqlite3'}"
            object.__setattr__(self, "database_url", url)
        if not self.broker_url:
            object.__setattr__(self, "broker_url", "filesystem://")
        _check_url_schemes(self.database_url, self.broker_url)
        if not self.stream_url:
            redis_broker = self.broker_url.startswith(REDIS_SCHEMES) and ";" not in self.broker_url
            url = self.broker_url if redis_broker else self.database_url
            object.__setattr__(self, "stream_url", url)
        if self.lease_seconds <= self.heartbeat_interval:
            raise SettingsError("lease_seconds must be longer than heartbeat_interval")
        if not 0 < self.fence_margin_seconds < float("inf"):
            raise SettingsError("fence_margin_seconds must be positive (and finite)")
        if self.heartbeat_interval >= self.lease_seconds - self.fence_margin_seconds:
            # A run would stop itself before its first renewal could save it.
            raise SettingsError(
                "heartbeat_interval must be shorter than lease_seconds - fence_margin_seconds "
                f"({self.heartbeat_interval:g} >= {self.lease_seconds:g} - "
                f"{self.fence_margin_seconds:g}): a run must renew its lease at least once "
                "before it would stop itself"
            )
        if self.api_auth not in ("on", "off"):
            raise SettingsError(f"api_auth must be 'on' or 'off', not {self.api_auth!r}")
        if self.flower_payloads not in ("on", "off"):
            raise SettingsError(
                f"flower_payloads must be 'on' or 'off', not {self.flower_payloads!r}"
            )
        for name in (
            "max_payload_bytes",
            "stream_max_events",
            "stream_max_event_bytes",
            "database_pool_size",
            "api_threads",
        ):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be positive")
        if self.stream_retention_seconds <= 0:
            raise SettingsError("stream_retention_seconds must be positive")
        if not 0 <= self.shutdown_grace_seconds < float("inf"):
            raise SettingsError("shutdown_grace_seconds must be zero or more (and finite)")
        if not 0 < self.ready_timeout < float("inf"):
            raise SettingsError("ready_timeout must be positive (and finite)")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Read RUNQUEUE_* variables; keyword overrides win (None means 'not given')."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name, kind in _FIELD_TYPES.items():
            raw = environ.get(ENV_PREFIX + name.upper())
            if raw is None or raw == "":
                continue
            try:
                values[name] = kind(raw)
            except ValueError as exc:
                raise SettingsError(f"{ENV_PREFIX}{name.upper()}: {exc}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - set(_FIELD_TYPES)
        if unknown:
            raise SettingsError(f"unknown settings: {', '.join(sorted(unknown))}")
        return cls(**values)  # type: ignore[arg-type]

    def environment(self) -> dict[str, str]:
        """These settings as RUNQUEUE_* variables, so a child process sees exactly them."""
        return {ENV_PREFIX + name.upper(): str(getattr(self, name)) for name in _FIELD_TYPES}

    def process_environment(self) -> dict[str, str]:
        """The environment of a child process that must see exactly these settings: this
        process's environment without its RUNQUEUE_* variables, plus environment()."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        return inherited | self.environment()

    def with_overrides(self, **overrides: object) -> Settings:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def is_embedded_broker(self) -> bool:
        return self.broker_url.startswith("filesystem://")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def is_redis_stream(self) -> bool:
        return self.stream_url.startswith(REDIS_SCHEMES)

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "broker"

    @property
    def control_dir(self) -> Path:
        return self.data_dir / "broker-control"


DATABASE_BACKENDS = ("sqlite", "postgresql")  # what the store speaks (make_url backend names)


def _check_url_schemes(database_url: str, broker_url: str) -> None:
    """SettingsError naming the supported schemes, for a URL no part of runqueue can open
    (said now, in one line, rather than as a driver's traceback at the first query)."""
    try:
        backend = make_url(database_url).get_backend_name()
    except (ArgumentError, ValueError):
        raise SettingsError(f"invalid database URL: {redact_url(database_url)}") from None
    url = make_url(database_url)
    if backend not in DATABASE_BACKENDS or (
        backend == "postgresql" and url.get_driver_name() != "psycopg"
    ):
        raise SettingsError(
            f"unsupported database URL {redact_url(database_url)} "
            "(supported: sqlite:///PATH, postgresql+psycopg://...)"
        )
    if backend == "sqlite" and url.database in (None, "", ":memory:"):
        raise SettingsError(
            f"{redact_url(database_url)} is an in-memory database, which no other process "
            "(a worker, the next command) can see: give a file, sqlite:///PATH"
        )
    from kombu.transport import TRANSPORT_ALIASES

    for part in broker_url.split(";"):
        scheme = part.partition("://")[0].partition("+")[0]
        if scheme not in TRANSPORT_ALIASES:
            raise SettingsError(
                f"unsupported broker URL {redact_url(part)} "
                "(supported: redis://, rediss://, amqp://, filesystem://, ... as kombu names them)"
            )


_PARSERS: dict[str, type] = {"Path": Path, "str": str, "int": int, "float": float}
# Every field is a RUNQUEUE_<NAME> variable, parsed by its annotated type.
_FIELD_TYPES: dict[str, type] = {f.name: _PARSERS[str(f.type)] for f in fields(Settings)}


# user:password@ in a URL that SQLAlchemy cannot parse (a non-numeric port, say).
_PASSWORD_IN_URL = re.compile(r"(://[^/@:;]*:)[^/@;]*@")


def redact_url(url: str) -> str:
    """The URL with its password hidden, fit for logs and error messages. SQLAlchemy's own
    rendering, which parses broker URLs as well as database ones; kombu's failover form
    (`redis://a;redis://b`) part by part; a part it cannot parse has its password masked."""
    return ";".join(_redact_one(part) for part in url.split(";"))


def _redact_one(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return _PASSWORD_IN_URL.sub(r"\1***@", url)
