"""The soak runs on the fault suite's fixtures: a private Redis it restarts, a fresh database on
the shared PostgreSQL, and `report` for its FIGURE line."""

from tests.faults.conftest import private_redis, report, shared_database  # noqa: F401
