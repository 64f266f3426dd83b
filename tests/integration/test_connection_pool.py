"""A process with more concurrent callers than its pool opens no connection per call: every
connection the pool opens stays open, and callers beyond it wait for one."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import event

from runqueue import SyncRunManager
from tests.conftest import require_services
from tests.support import Backend, make_backend


@pytest.fixture
def small_pool(tmp_path) -> Iterator[Backend]:  # noqa: ANN001
    require_services()
    backend = make_backend("postgres_redis", tmp_path, database_pool_size=4)
    yield backend
    backend.close()


def test_many_producer_threads_reuse_the_pool(small_pool: Backend):
    manager: SyncRunManager = small_pool.manager()
    manager.create(f"warm-{uuid.uuid4().hex[:8]}", "echo")
    engine = manager.store.engine
    opened: list[object] = []
    event.listen(engine, "connect", lambda *_: opened.append(1))
    errors: list[BaseException] = []

    def produce(index: int) -> None:
        try:
            for step in range(10):
                manager.create(f"pool-{index}-{step}-{uuid.uuid4().hex[:6]}", "echo")
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=produce, args=(index,)) for index in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    # 320 creates from 32 threads: at most the pool's 4 connections were ever opened (with an
    # overflow of 10 this opened one per burst: 60 per 1,000 creates at 8 threads, 138 at 64).
    assert len(opened) <= 4, f"{len(opened)} connections opened for 320 creates"
    assert engine.pool.size() == 4
