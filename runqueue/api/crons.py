"""Crons: created for a thread or stateless, read, searched, counted, changed, deleted. The
run fields of a cron's request are made into its runs' kwargs once, as a run request's are
(run_creation.run_kwargs); the registry checks the rest and the workers' schedulers fire it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from runqueue.api.context import Api, ApiContext
from runqueue.api.cron_schemas import (
    RUN_FIELDS,
    Cron,
    CronCount,
    CronCreate,
    CronPatch,
    CronSearch,
    run_body,
)
from runqueue.api.run_creation import check_nesting, run_kwargs
from runqueue.api.schemas import ERROR_RESPONSES, ErrorBody, Json
from runqueue.api.threads import thread_of_user
from runqueue.api.users import User
from runqueue.errors import CronNotFoundError, EmptyChangeError
from runqueue.records import CronRecord

router = APIRouter(tags=["crons"], responses=ERROR_RESPONSES)


def _kwargs(api: ApiContext, assistant_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The kwargs of the runs a cron's payload asks for, checked as a run request's are."""
    body = run_body(assistant_id, payload)
    check_nesting(body, api.settings.max_json_depth)
    return run_kwargs(api.manager.sync.app.tasks[assistant_id], body)


async def _create(
    api: ApiContext, body: CronCreate, user: str | None, thread_id: str | None
) -> Cron:
    if thread_id is not None:
        await thread_of_user(api, thread_id, user)
    name = api.manager.assistant_name(body.assistant_id)
    payload = body.model_dump(mode="json", exclude_none=True)
    cron = await api.manager.create_cron(
        name,
        schedule=body.schedule,
        thread_id=thread_id,
        kwargs=_kwargs(api, name, payload),
        metadata=body.metadata,
        timezone=body.timezone,
        end_time=body.end_time,
        enabled=True if body.enabled is None else body.enabled,
        on_run_completed=body.on_run_completed,
        multitask_strategy=body.multitask_strategy,
        webhook=body.webhook,
        payload=payload,
        user_id=user,
    )
    return Cron.of(cron)


@router.post("/runs/crons", response_model=Cron)
async def create_stateless_cron(*, body: CronCreate, api: Api, user: User) -> Cron:
    """A cron whose every fire runs on a new thread (on_run_completed: delete it once the
    run has ended, the default, or keep it)."""
    return await _create(api, body, user, None)


@router.post("/threads/{thread_id}/runs/crons", response_model=Cron)
async def create_thread_cron(*, thread_id: str, body: CronCreate, api: Api, user: User) -> Cron:
    """A cron whose fires run on this thread, with its multitask_strategy when it is busy."""
    return await _create(api, body, user, thread_id)


async def _cron_of_user(api: ApiContext, cron_id: str, user: str | None) -> CronRecord:
    cron = await api.manager.get_cron(cron_id, user_id=user)
    if cron is None:
        raise CronNotFoundError(f"cron {cron_id} not found")
    return cron


@router.get("/runs/crons/{cron_id}", response_model=Cron)
async def get_cron(*, cron_id: str, api: Api, user: User) -> Cron:
    return Cron.of(await _cron_of_user(api, cron_id, user))


@router.patch("/runs/crons/{cron_id}", response_model=Cron, responses={400: {"model": ErrorBody}})
async def patch_cron(*, cron_id: str, body: CronPatch, api: Api, user: User) -> Cron:
    """Change what the body gives; a new schedule, timezone, end_time or enabled moves the
    next tick to the first one from now."""
    given = body.model_dump(mode="json", exclude_unset=True)
    if not given:
        raise EmptyChangeError("the request body gives nothing to change")
    current = await _cron_of_user(api, cron_id, user)
    payload = current.payload | given
    changes: dict[str, Any] = {"payload": payload}
    if given.keys() & set(RUN_FIELDS):
        changes["kwargs"] = _kwargs(api, current.assistant_id, payload)
    for name in ("schedule", "timezone", "enabled", "metadata", "on_run_completed", "webhook"):
        if given.get(name) is not None:
            changes[name] = getattr(body, name)
    if "end_time" in given:
        changes["end_time"] = body.end_time
    cron = await api.manager.update_cron(cron_id, user_id=user, **changes)
    return Cron.of(cron)


@router.delete("/runs/crons/{cron_id}", status_code=204, response_class=Response)
async def delete_cron(*, cron_id: str, api: Api, user: User) -> Response:
    await api.manager.delete_cron(cron_id, user_id=user)
    return Response(status_code=204)


@router.post("/runs/crons/search", response_model=list[Json])
async def search_crons(*, body: CronSearch, api: Api, user: User) -> list[Json]:
    crons = await api.manager.search_crons(
        assistant_id=body.assistant_id,
        thread_id=body.thread_id,
        enabled=body.enabled,
        metadata=body.metadata,
        user_id=user,
        limit=body.limit,
        offset=body.offset,
        sort_by=body.sort_by or "created_at",
        descending=body.sort_order != "asc",
    )
    shown = [Cron.of(cron).model_dump(mode="json") for cron in crons]
    if body.select:
        shown = [{name: cron[name] for name in body.select} for cron in shown]
    return shown


@router.post("/runs/crons/count", response_model=int)
async def count_crons(*, body: CronCount, api: Api, user: User) -> int:
    return await api.manager.count_crons(
        assistant_id=body.assistant_id,
        thread_id=body.thread_id,
        metadata=body.metadata,
        user_id=user,
    )
