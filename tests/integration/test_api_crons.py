"""Crons over HTTP, driven by the official langgraph-sdk unchanged (client.crons.create,
create_for_thread, search, count, update, delete), against a real `runqueue serve` and a
real worker whose scheduler fires them (PostgreSQL + Redis): the runs a cron fires are its
user's, another user sees none of its crons, and bad requests are 4xx with a `detail`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.errors import BadRequestError, NotFoundError, UnprocessableEntityError

from tests.api_support import ServerProcess
from tests.support import wait_until

pytestmark = pytest.mark.integration

EVERY_SECOND = "* * * * * *"
CRON_KEYS = {
    "cron_id",
    "assistant_id",
    "thread_id",
    "on_run_completed",
    "end_time",
    "schedule",
    "timezone",
    "created_at",
    "updated_at",
    "payload",
    "user_id",
    "next_run_date",
    "metadata",
    "enabled",
}


def client(server: ServerProcess, key: str):  # noqa: ANN201
    return get_client(url=server.url, api_key=key)


def test_the_async_clients_cron_calls(server, keys, api_backend) -> None:  # noqa: ANN001
    manager = api_backend.manager()

    async def scenario() -> None:
        sdk, bob = client(server, keys["alice"]), client(server, keys["bob"])
        stateless = await sdk.crons.create(
            "echo",
            schedule=EVERY_SECOND,
            input={"n": 1},
            metadata={"team": "crons"},
            on_run_completed="keep",
        )
        assert set(stateless) == CRON_KEYS, stateless
        assert stateless["thread_id"] is None and stateless["on_run_completed"] == "keep"
        assert stateless["user_id"] == "alice" and stateless["enabled"] is True
        assert stateless["payload"]["input"] == {"n": 1}
        assert stateless["metadata"] == {"team": "crons"}

        thread = await sdk.threads.create()
        tid = thread["thread_id"]
        end = datetime.now(UTC) + timedelta(hours=1)
        threaded = await sdk.crons.create_for_thread(
            tid,
            "agent",
            schedule=EVERY_SECOND,
            input={"steps": []},
            multitask_strategy="enqueue",
            end_time=end,
            timezone="Europe/Paris",
        )
        assert threaded["thread_id"] == tid and threaded["on_run_completed"] is None
        assert threaded["timezone"] == "Europe/Paris"

        # The worker's scheduler fires them: the thread cron's runs are on its thread.
        runs = await wait_for_runs(sdk, tid)
        result = await sdk.runs.join(tid, runs[-1]["run_id"])
        assert result["steps"] == ["work", "review", "respond"]
        assert runs[-1]["metadata"] == {}
        # The stateless cron's runs: each on a new thread, alice's, with the cron's metadata.
        fire = wait_until(lambda: manager.cron_fires(stateless["cron_id"]), timeout=30)[-1]
        run = await sdk.runs.get(fire.thread_id, fire.run_id)
        assert run["metadata"] == {"team": "crons"} and run["kwargs"] == {"n": 1}
        with pytest.raises(NotFoundError):
            await bob.runs.get(fire.thread_id, fire.run_id)

        found = await sdk.crons.search(thread_id=tid)
        assert [c["cron_id"] for c in found] == [threaded["cron_id"]]
        found = await sdk.crons.search(assistant_id="echo", enabled=True)
        assert [c["cron_id"] for c in found] == [stateless["cron_id"]]
        assert await sdk.crons.count(assistant_id="echo") == 1
        assert await sdk.crons.count() == 2
        picked = await sdk.crons.search(select=["cron_id", "schedule"], limit=1)
        assert len(picked) == 1 and set(picked[0]) == {"cron_id", "schedule"}

        # Another user sees none of them, and cannot change them.
        assert await bob.crons.search() == [] and await bob.crons.count() == 0
        with pytest.raises(NotFoundError):
            await bob.crons.update(stateless["cron_id"], enabled=False)
        with pytest.raises(NotFoundError):
            await bob.crons.delete(stateless["cron_id"])
        with pytest.raises(NotFoundError):
            await bob.crons.create_for_thread(tid, "agent", schedule=EVERY_SECOND)

        changed = await sdk.crons.update(stateless["cron_id"], schedule="0 9 * * *", enabled=False)
        assert changed["schedule"] == "0 9 * * *" and changed["enabled"] is False
        next_run = datetime.fromisoformat(changed["next_run_date"])
        assert (next_run.hour, next_run.minute, next_run.second) == (9, 0, 0)
        assert await sdk.crons.count() == 2
        assert [c["cron_id"] for c in await sdk.crons.search(enabled=False)] == [
            stateless["cron_id"]
        ]
        cleared = await sdk.crons.update(threaded["cron_id"], end_time=None, enabled=False)
        assert cleared["end_time"] is None

        for cron in (stateless, threaded):
            await sdk.crons.delete(cron["cron_id"])
        assert await sdk.crons.count() == 0
        with pytest.raises(NotFoundError):
            await sdk.crons.delete(stateless["cron_id"])

    asyncio.run(scenario())


async def wait_for_runs(sdk, thread_id: str) -> list:  # noqa: ANN001
    for _ in range(300):
        runs = await sdk.runs.list(thread_id)
        if runs:
            return runs
        await asyncio.sleep(0.1)
    raise AssertionError("the thread cron fired no run in 30 s")


def test_bad_cron_requests_are_4xx_with_detail(server, keys) -> None:  # noqa: ANN001
    sdk = get_sync_client(url=server.url, api_key=keys["alice"])
    with pytest.raises(UnprocessableEntityError, match="invalid cron schedule"):
        sdk.crons.create("echo", schedule="every minute")
    with pytest.raises(UnprocessableEntityError):
        sdk.crons.create("echo", schedule="* * * * *", timezone="Mars/Olympus")
    with pytest.raises(NotFoundError):
        sdk.crons.create("no-such-assistant", schedule="* * * * *")
    with pytest.raises(NotFoundError):
        sdk.crons.update("4e0b8ea4-5ab0-4a8b-9d16-7b0f41d1f3a1", enabled=False)
    with httpx.Client(base_url=server.url, headers={"x-api-key": keys["alice"]}) as http:
        answer = http.post("/runs/crons", json={"assistant_id": "echo", "schedule": "x"})
        assert answer.status_code == 422 and "invalid cron schedule" in answer.json()["detail"]
        unknown = http.post(
            "/runs/crons", json={"assistant_id": "echo", "schedule": "* * * * *", "nope": 1}
        )
        assert unknown.status_code == 422
        cron = http.post("/runs/crons", json={"assistant_id": "echo", "schedule": "0 0 1 1 *"})
        assert cron.status_code == 200 and cron.json()["on_run_completed"] == "delete"
        cron_id = cron.json()["cron_id"]
        assert http.get(f"/runs/crons/{cron_id}").json()["cron_id"] == cron_id
        with pytest.raises(BadRequestError):
            sdk.http.patch(f"/runs/crons/{cron_id}", json={})
        assert http.delete(f"/runs/crons/{cron_id}").status_code == 204
        assert http.get(f"/runs/crons/{cron_id}").status_code == 404
