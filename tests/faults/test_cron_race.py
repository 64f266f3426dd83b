"""Crons, exactly once across the fleet, on PostgreSQL + Redis. Three workers' schedulers
(every 0.2 s) race on 20 crons firing every second; one worker is SIGKILLed with its pool
children and started again: every tick from each cron's first to its end_time is fired
exactly once, each fire made exactly one run, and no run exists that a fire did not make.
And a scheduler SIGKILLed inside its fire transaction (fire row and run written, not
committed) fired nothing: another scheduler fires that same tick."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta

from sqlalchemy import text

from tests.faults import faultkit
from tests.support import REPO_ROOT, checkout_path, settings_env

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


# A scheduler stopped inside its fire transaction: the fire row and the run are written, not
# committed. It prints the run's id, then waits to be killed.
STALLED_SCHEDULER = """
import sys, time
from runqueue import Settings
from runqueue.store import RunStore

original = RunStore._create_in

def stalled(self, conn, new, check_strategy, effects):
    run = original(self, conn, new, check_strategy, effects)
    print("mid-fire", new.run_id, flush=True)
    time.sleep(600)

RunStore._create_in = stalled
settings = Settings.from_env()
RunStore(settings.database_url).fire_cron(sys.argv[1], None, 60.0)
"""


def test_a_scheduler_killed_mid_fire_fired_nothing_and_another_fires_the_tick(
    shared_backend, report
):  # noqa: ANN001
    settings = shared_backend.settings
    manager = faultkit.manager_for(settings)
    cron = manager.create_cron("noop", schedule=EVERY_SECOND, on_run_completed="keep")
    time.sleep(1.2)  # its first tick is due
    stalled = subprocess.Popen(
        [sys.executable, "-c", STALLED_SCHEDULER, cron.cron_id],
        env=settings_env(settings) | checkout_path(),
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    try:
        line = stalled.stdout.readline().split()
        assert line[:1] == ["mid-fire"], line
        lost_run = line[1]
        # Mid-fire: another scheduler finds the cron locked, and fires nothing meanwhile.
        assert manager.store.fire_cron(cron.cron_id, None, 60.0)[0] is None
        stalled.kill()  # SIGKILL
        stalled.wait()
        killed_at = time.monotonic()
        fire = faultkit.wait_for(
            lambda: manager.store.fire_cron(cron.cron_id, None, 60.0)[0],
            timeout=10,
            message="the tick fired by another scheduler",
        )
        refired_after = time.monotonic() - killed_at
    finally:
        if stalled.poll() is None:
            stalled.kill()
            stalled.wait()
    assert fire.tick == cron.next_run_date  # the very tick the killed scheduler had taken
    assert manager.get(lost_run) is None  # its run was never committed
    assert manager.get(fire.run_id) is not None
    fires = manager.cron_fires(cron.cron_id)
    assert [(f.tick, f.run_id) for f in fires] == [(fire.tick, fire.run_id)]
    report("cron-killed-mid-fire", fires=len(fires), refired_after_s=refired_after)
