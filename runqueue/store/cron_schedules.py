"""A cron's schedule: checked, and stepped from tick to tick, with croniter (5 fields, or 6
with seconds last, croniter's own order), in the cron's IANA timezone (zoneinfo; None is
UTC). Ticks are UTC datetimes: the store compares them with the database's clock."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from runqueue.errors import InvalidPayloadError

MAX_SCHEDULE_LENGTH = 200  # the column's width


def check_schedule(schedule: object) -> str:
    """The schedule, or InvalidPayloadError naming it: croniter's syntax, 5 fields (minute
    hour day month weekday) or 6 (and seconds)."""
    if (
        not isinstance(schedule, str)
        or not 0 < len(schedule) <= MAX_SCHEDULE_LENGTH
        or len(schedule.split()) not in (5, 6)
        or not croniter.is_valid(schedule)
    ):
        raise InvalidPayloadError(
            f"invalid cron schedule: {schedule!r} (cron syntax: 'minute hour day month "
            "weekday', e.g. '*/5 * * * *'; a sixth field is seconds: '* * * * * */10')"
        )
    return schedule


def check_timezone(name: object) -> str | None:
    """An IANA timezone name (None: UTC), or InvalidPayloadError naming it."""
    if name is None:
        return None
    try:
        if not isinstance(name, str) or not name or len(name) > 64:
            raise ValueError(name)
        ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):
        raise InvalidPayloadError(
            f"invalid timezone: {name!r} (an IANA name, e.g. 'America/New_York')"
        ) from None
    return name


def _zone(timezone: str | None) -> tzinfo:
    return UTC if timezone is None else ZoneInfo(timezone)


def utc(value: datetime) -> datetime:
    """A datetime in UTC (a naive one, as SQLite hands them back, is UTC already)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def next_tick(schedule: str, timezone: str | None, after: datetime) -> datetime:
    """The schedule's first tick strictly after `after`, in UTC."""
    start = utc(after).astimezone(_zone(timezone))
    return utc(croniter(schedule, start).get_next(datetime))


def latest_tick(schedule: str, timezone: str | None, until: datetime) -> datetime:
    """The schedule's last tick at or before `until`, in UTC: the one a late scheduler fires
    of the ticks it missed (the catch-up policy, docs/operations.md)."""
    start = utc(until).astimezone(_zone(timezone))
    tick = utc(croniter(schedule, start).get_prev(datetime))
    following = next_tick(schedule, timezone, tick)
    return following if following <= utc(until) else tick
