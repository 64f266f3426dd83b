"""One typed settings object, read from RUNQUEUE_* environment variables.

With nothing set, runqueue runs embedded: a SQLite file and kombu's filesystem broker
under one data directory, so no server is needed.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from runqueue.errors import SettingsError
from runqueue.records import MAX_JSON_DEPTH_CEILING

ENV_PREFIX = "RUNQUEUE_"
MAX_WORKER_LOSSES = 100  # the most a setting may allow: a bound, never "retry forever"
REDIS_SCHEMES = ("redis://", "rediss://")
DEFAULT_APP = "workers.app:app"


def _default_data_dir() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "runqueue"


@dataclass(frozen=True)
class Settings:
    """Everything runqueue needs to find its database, broker and assistants."""

    data_dir: Path = field(default_factory=_default_data_dir)
    database_url: str = ""  # empty: sqlite file under data_dir
    broker_url: str = ""  # empty: filesystem broker under data_dir
    app: str = DEFAULT_APP  # the Celery app that registers the assistants
    # A LangGraph project's langgraph.json: the app is then runqueue's own, with exactly the
    # file's graphs as assistants (runqueue.langgraph.project), and `app` is not used.
    config: str = ""
    # The assistants to serve, beyond the app's own: comma-separated "module:function"
    # (called with the app, registers its assistants) or "module" (Celery's `imports`).
    imports: str = ""
    queue: str = "runqueue"  # the Celery queue runs are published to
    default_assistant: str = ""  # used when create() gets no assistant_id
    max_payload_bytes: int = 1024 * 1024  # kwargs/metadata size limit
    # How deep kwargs, metadata and search filters may nest (objects and arrays), at most
    # MAX_JSON_DEPTH_CEILING: deeper values break pickling, serializers and json itself.
    max_json_depth: int = 100
    heartbeat_interval: float = 10.0  # seconds between lease renewals of a running run
    lease_seconds: float = 30.0  # a running run whose lease is older is reaped
    # A run whose worker could not renew its lease for lease_seconds - this stops itself,
    # before any other worker may reap it (docs/reliability.md, "Self-fencing").
    fence_margin_seconds: float = 5.0
    republish_after: float = 30.0  # a queued run not claimed for this long is published again
    # A run whose deliveries or attempts took their worker down this many times (a pool
    # child that died before its claim, a lease that expired) ends as `error`: a poison run
    # is never handed to the fleet forever. 1 to MAX_WORKER_LOSSES; it cannot be turned off.
    max_worker_losses: int = 3
    maintenance_interval: float = 2.0  # how often a worker relays/reaps
    # A worker's due-run loop sleeps until the next delayed run falls due, and at most this
    # long: how soon a new delayed run due sooner than every other is seen (docs/api.md).
    due_poll_interval: float = 0.5
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
    api_max_header_bytes: int = 16384  # a request's line and headers, at most (431 beyond)
    # A request's line and headers must arrive within this many seconds of the connection's
    # start or of the previous response's end, else the connection is closed (idle ones too).
    api_header_timeout_seconds: float = 10.0
    api_body_timeout_seconds: float = 30.0  # a request's body must arrive in full (408 after)
    # Comma-separated IPs or CIDRs of proxies whose X-Forwarded-For/-Proto the API believes
    # (uvicorn's forwarded_allow_ips); empty: none, the client is the socket's peer.
    api_trusted_proxies: str = ""
    # A user's streams and waits open at once in one API process; more answer 429.
    api_max_streams_per_user: int = 20
    flower_payloads: str = "off"  # "on": Flower shows runs' kwargs and results too
    # "on" (debugging only): logs show runs' results, SQL parameters and query strings too;
    # by default they carry ids, sizes and types, never payloads.
    log_payloads: str = "off"
    # The HTTP API refuses a user's new run (429) while this many of theirs are in flight.
    api_max_runs_in_flight_per_user: int = 100
    shutdown_grace_seconds: float = 20.0  # SIGTERM: running runs may finish this long
    ready_timeout: float = 30.0  # a starting worker waits this long for database and broker
    # Crons: every worker's scheduler looks for due ticks this often (seconds); "off": this
    # worker schedules nothing. A tick more than cron_misfire_grace_seconds late (every
    # scheduler was down) is collapsed: only the latest missed tick fires, once.
    cron_scheduler: str = "on"
    cron_interval: float = 1.0
    cron_misfire_grace_seconds: float = 60.0
    # The Store's semantic search (docs/operations.md): "module:function" naming an embedding
    # function (a list of texts -> a list of vectors of store_embed_dims floats); empty: off.
    store_embed: str = ""
    store_embed_dims: int = 0  # the vectors' length; required with store_embed
    store_embed_fields: str = "$"  # comma-separated JSON paths of a value that are embedded
    # Completion webhooks (runqueue/webhooks.py, docs/operations.md "Webhooks"): the HMAC
    # secret (empty: sent unsigned), hosts a webhook may reach despite the address checks
    # (comma-separated: "127.0.0.1,hooks.internal"), one POST's time limit, how long a
    # delivery is retried (from its first attempt), the backoff between attempts (doubling from
    # the first, capped), how long a worker's claim on a delivery lasts, how often it looks.
    webhook_secret: str = ""
    webhook_allowed_hosts: str = ""
    webhook_timeout: float = 10.0
    webhook_retry_for: float = 3600.0
    webhook_backoff_initial: float = 1.0
    webhook_backoff_max: float = 300.0
    webhook_lease_seconds: float = 60.0
    webhook_poll_interval: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser())
        if self.config and self.app != DEFAULT_APP:
            raise SettingsError(
                f"give a Celery app ({self.app}) or a langgraph.json ({self.config}), not both"
            )
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
        for name in ("flower_payloads", "log_payloads"):
            if getattr(self, name) not in ("on", "off"):
                raise SettingsError(f"{name} must be 'on' or 'off', not {getattr(self, name)!r}")
        if not 0 < self.max_worker_losses <= MAX_WORKER_LOSSES:
            raise SettingsError(
                f"max_worker_losses must be between 1 and {MAX_WORKER_LOSSES}, not "
                f"{self.max_worker_losses}: a run that keeps taking its worker down is always "
                'stopped (docs/reliability.md, "Poison runs")'
            )
        for name in (
            "max_payload_bytes",
            "stream_max_events",
            "stream_max_event_bytes",
            "database_pool_size",
            "api_threads",
            "api_max_runs_in_flight_per_user",
            "api_max_header_bytes",
            "api_max_streams_per_user",
        ):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be positive")
        for name in ("api_header_timeout_seconds", "api_body_timeout_seconds"):
            if not 0 < getattr(self, name) < float("inf"):
                raise SettingsError(f"{name} must be positive (and finite)")
        _check_trusted_proxies(self.api_trusted_proxies)
        if not 0 < self.max_json_depth <= MAX_JSON_DEPTH_CEILING:
            raise SettingsError(
                f"max_json_depth must be between 1 and {MAX_JSON_DEPTH_CEILING} (deeper JSON "
                f"breaks pickling and serializers), not {self.max_json_depth}"
            )
        if self.stream_retention_seconds <= 0:
            raise SettingsError("stream_retention_seconds must be positive")
        if not 0 <= self.shutdown_grace_seconds < float("inf"):
            raise SettingsError("shutdown_grace_seconds must be zero or more (and finite)")
        if not 0 < self.ready_timeout < float("inf"):
            raise SettingsError("ready_timeout must be positive (and finite)")
        self._check_background_duties()

    def _check_background_duties(self) -> None:
        """The bounds of the crons', delayed runs', webhooks' and the Store's settings."""
        if self.cron_scheduler not in ("on", "off"):
            raise SettingsError(
                f"cron_scheduler must be 'on' or 'off', not {self.cron_scheduler!r}"
            )
        for name in (
            *("cron_interval", "cron_misfire_grace_seconds", "due_poll_interval"),
            *("webhook_timeout", "webhook_backoff_initial", "webhook_poll_interval"),
        ):
            if not 0 < getattr(self, name) < float("inf"):
                raise SettingsError(f"{name} must be positive (and finite)")
        if self.store_embed and (":" not in self.store_embed or self.store_embed_dims <= 0):
            raise SettingsError(
                "store_embed must name module:function, with store_embed_dims positive "
                f"(got {self.store_embed!r}, {self.store_embed_dims})"
            )
        if not 0 <= self.webhook_retry_for < float("inf"):
            raise SettingsError("webhook_retry_for must be zero or more (and finite)")
        if self.webhook_backoff_max < self.webhook_backoff_initial:
            raise SettingsError("webhook_backoff_max must be at least webhook_backoff_initial")
        if self.webhook_lease_seconds <= self.webhook_timeout:
            raise SettingsError(
                "webhook_lease_seconds must be longer than webhook_timeout: a delivery's "
                "claim must outlast its POST, or two workers could send it at once"
            )

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
    def assistants_source(self) -> str:
        """Where this process's assistants come from, as a person would name it."""
        return f"the project {self.config}" if self.config else f"the app {self.app}"

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


def trusted_proxies(value: str) -> list[str]:
    """Settings.api_trusted_proxies as a list of its IPs and CIDRs."""
    return [entry.strip() for entry in value.split(",") if entry.strip()]


def _check_trusted_proxies(value: str) -> None:
    for entry in trusted_proxies(value):
        try:
            ipaddress.ip_network(entry)  # strict, as uvicorn reads it: 10.0.0.0/8, not 10.0.0.1/8
        except ValueError:
            raise SettingsError(
                f"api_trusted_proxies: {entry!r} is not an IP address or a CIDR network "
                "(such as 10.0.0.0/8)"
            ) from None


DATABASE_BACKENDS = ("sqlite", "postgresql")  # what the store speaks
# A database URL as SQLAlchemy reads it (sqlalchemy.engine.url's pattern, reduced to what is
# checked here): settings sit below the store, and only the store imports SQLAlchemy.
_DATABASE_URL = re.compile(
    r"(?P<name>[\w+]+)://"
    r"(?:[^:/]*(?::[^@]*)?@)?"
    r"(?:(?:\[[^/?]+\]|[^/:?]+)?(?::(?P<port>[^/?]*))?)?"
    r"(?:/(?P<database>[^?]*))?(?:\?.*)?$",
    re.DOTALL,
)


def _check_url_schemes(database_url: str, broker_url: str) -> None:
    """SettingsError naming the supported schemes, for a URL no part of runqueue can open
    (said now, in one line, rather than as a driver's traceback at the first query)."""
    url = _DATABASE_URL.match(database_url)
    if url is None or (url["port"] and not url["port"].isdigit()):
        raise SettingsError(f"invalid database URL: {redact_url(database_url)}")
    backend, _, driver = url["name"].partition("+")
    if backend not in DATABASE_BACKENDS or (
        backend == "postgresql" and driver not in ("", "psycopg")
    ):
        raise SettingsError(
            f"unsupported database URL {redact_url(database_url)} "
            "(supported: sqlite:///PATH, postgresql+psycopg://...)"
        )
    if backend == "sqlite" and url["database"] in (None, "", ":memory:"):
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


_USER_NAME = re.compile(r"[^:/]*")  # as SQLAlchemy reads one: it may have an @ (user@server)


def redact_url(url: str) -> str:
    """The URL with its password hidden (as ***), fit for logs and error messages: database
    and broker URLs alike, and kombu's failover form (`redis://a;redis://b`) part by part."""
    return ";".join(_redact_one(part) for part in url.split(";"))


def _redact_one(url: str) -> str:
    """user:password@ read as SQLAlchemy reads it: the password runs from the user name's
    `:` to the next `@` (it may have a `/`). Found with two scans, not a regex that would
    try again from every `://` of a long hostile value."""
    user = url.find("://")
    if user < 0:
        return url
    colon = _USER_NAME.match(url, user + 3).end()
    at = url.find("@", colon) if url.startswith(":", colon) else -1
    return url if at < 0 else f"{url[: colon + 1]}***{url[at:]}"
