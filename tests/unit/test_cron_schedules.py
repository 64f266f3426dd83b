"""A cron's schedule and timezone: checked and stepped with croniter and zoneinfo, ticks in
UTC (the store compares them with the database's clock)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from runqueue import Settings
from runqueue.errors import InvalidPayloadError, SettingsError
from runqueue.store.cron_schedules import (
    check_schedule,
    check_timezone,
    latest_tick,
    next_tick,
)


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_schedules_of_five_or_six_fields_are_taken_and_others_refused():
    assert check_schedule("*/5 * * * *") == "*/5 * * * *"
    assert check_schedule("* * * * * */10") == "* * * * * */10"
    for bad in ("", "every minute", "* * * *", "61 * * * *", "* * * * * * * *", None, 5):
        with pytest.raises(InvalidPayloadError, match="invalid cron schedule"):
            check_schedule(bad)


def test_timezones_are_iana_names_or_none():
    assert check_timezone(None) is None and check_timezone("Europe/Paris") == "Europe/Paris"
    for bad in ("Mars/Olympus", "", "../etc/passwd", "\x00", 3):
        with pytest.raises(InvalidPayloadError, match="invalid timezone"):
            check_timezone(bad)


def test_ticks_step_in_seconds_and_in_the_crons_timezone_across_dst():
    assert next_tick("* * * * * */10", None, at(2026, 1, 1, 0, 0, 5)) == at(2026, 1, 1, 0, 0, 10)
    # 9:00 in New York is 14:00 UTC in winter and 13:00 UTC after the March change.
    assert next_tick("0 9 * * *", "America/New_York", at(2026, 3, 7, 15)) == at(2026, 3, 8, 13)
    assert next_tick("0 9 * * *", "America/New_York", at(2026, 3, 6, 15)) == at(2026, 3, 7, 14)


def test_the_latest_tick_is_the_last_at_or_before_now():
    assert latest_tick("* * * * * */2", None, at(2026, 1, 1, 0, 0, 5)) == at(2026, 1, 1, 0, 0, 4)
    assert latest_tick("* * * * * */5", None, at(2026, 1, 1, 0, 0, 5)) == at(2026, 1, 1, 0, 0, 5)
    assert latest_tick("0 * * * *", None, at(2026, 1, 1, 10, 59, 59)) == at(2026, 1, 1, 10)


def test_the_cron_settings_are_checked():
    assert Settings().cron_interval == 1.0 and Settings().cron_scheduler == "on"
    with pytest.raises(SettingsError, match="cron_scheduler"):
        Settings(cron_scheduler="maybe")
    for name in ("cron_interval", "cron_misfire_grace_seconds"):
        with pytest.raises(SettingsError, match=name):
            Settings(**{name: 0})
