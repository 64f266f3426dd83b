"""Crons, exactly once across the fleet: three workers' schedulers (every 0.2 s) race on 20
crons firing every second, on PostgreSQL + Redis; one worker is SIGKILLed with its pool
children (whatever fire its scheduler had in flight rolls back) and started again. Every
tick from each cron's first to its end_time is fired exactly once, each fire made exactly
one run, and no run exists that a fire did not make."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import text

from tests.faults import faultkit

CRONS = 20
EVERY_SECOND = "* * * * * *"
FIRING_SECONDS = 9


def test_three_schedulers_racing_fire_every_tick_once(shared_backend, workers, report):  # noqa: ANN001
    settings = shared_backend.settings
    manager = faultkit.manager_for(settings)
    fleet = workers(settings, count=3, concurrency=1, extra_env={"RUNQUEUE_CRON_INTERVAL": "0.2"})
    with manager.store.transaction() as conn:
        now = conn.execute(text("SELECT statement_timestamp()")).scalar_one()
    end = now + timedelta(seconds=FIRING_SECONDS)
    crons = [
        manager.create_cron("noop", schedule=EVERY_SECOND, end_time=end, on_run_completed="keep")
        for _ in range(CRONS)
    ]
    time.sleep(3.0)
    victim = fleet[0]
    faultkit.kill_process_tree(victim)  # SIGKILL: main process and pool children
    killed_at = time.monotonic()
    time.sleep(1.0)
    victim.start()
    restarted_after = time.monotonic() - killed_at
    faultkit.wait_for(
        lambda: all(manager.get_cron(c.cron_id).next_run_date is None for c in crons),
        timeout=60,
        message="every cron past its end_time",
    )

    fires_total, lags, missing = 0, [], 0
    for cron in crons:
        fires = manager.cron_fires(cron.cron_id, limit=1000)
        expected, tick = [], cron.next_run_date
        while tick <= end:
            expected.append(tick)
            tick += timedelta(seconds=1)
        ticks = sorted(fire.tick for fire in fires)
        missing += len(set(expected) - set(ticks))
        assert ticks == expected, (cron.cron_id, ticks, expected)  # each tick once, none extra
        assert all(fire.outcome == "created" and fire.run_id for fire in fires), fires
        fires_total += len(fires)
        lags += [(fire.fired_at - fire.tick).total_seconds() for fire in fires]
    with manager.store.transaction() as conn:
        runs = conn.execute(text("SELECT run_id, thread_id FROM runs")).all()
        fire_rows = conn.execute(text("SELECT run_id, thread_id FROM cron_fires")).all()
    # No duplicate run: the runs are exactly the fires' runs, one per fire, each on its thread.
    assert sorted(map(tuple, runs)) == sorted(map(tuple, fire_rows))
    assert len({row.thread_id for row in runs}) == len(runs) == fires_total
    lags.sort()
    report(
        "cron-race",
        crons=CRONS,
        schedulers=3,
        fires=fires_total,
        duplicates=len(runs) - fires_total,
        missing=missing,
        restarted_after_s=restarted_after,
        lag_p50_s=lags[len(lags) // 2],
        lag_max_s=lags[-1],
    )
