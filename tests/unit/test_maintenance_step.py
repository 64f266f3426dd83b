"""Relaying and reaping are a worker bootstep: any worker of a runqueue app gets it, between
the pool and the consumer, so it stops as soon as the worker stops consuming."""

from __future__ import annotations

from celery.worker import WorkController

from runqueue import Settings, create_app
from runqueue.worker.maintenance import MaintenanceStep


def blueprint_order(app) -> list[str]:  # noqa: ANN001
    """The worker's steps in start order (stop order is the reverse); nothing is started."""
    worker = WorkController(app=app, pool_cls="solo", without_mingle=True, without_gossip=True)
    return [step.name for step in worker.blueprint.order]


def test_every_worker_of_a_runqueue_app_runs_the_maintenance_step(tmp_path):
    order = blueprint_order(create_app(Settings(data_dir=tmp_path)))
    step = MaintenanceStep.name
    assert step in order, order
    assert order.index("celery.worker.components.Pool") < order.index(step), order
    assert order.index(step) < order.index("celery.worker.components.Consumer"), order


def test_a_plain_celery_app_is_left_alone():
    from celery import Celery

    assert MaintenanceStep.name not in blueprint_order(Celery("plain", broker="memory://"))
