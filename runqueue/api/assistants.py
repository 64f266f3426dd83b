"""GET /assistants/{id} and POST /assistants/search: the assistants this app registers.

An assistant is a registered Celery task or LangGraph graph; its id and graph_id are its
name, which is also what a run's assistant_id names.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from runqueue import validation
from runqueue.api.context import Api, ApiContext
from runqueue.api.schemas import ERROR_RESPONSES, Assistant, AssistantSearch
from runqueue.api.users import current_user
from runqueue.errors import UnknownAssistantError
from runqueue.worker.task import description_of

router = APIRouter(
    tags=["assistants"], dependencies=[Depends(current_user)], responses=ERROR_RESPONSES
)


def _assistant(api: ApiContext, name: str) -> Assistant:
    task = api.manager.sync.app.tasks[name]
    return Assistant(
        assistant_id=name,
        graph_id=name,
        name=name,
        description=description_of(task) or None,
        created_at=api.started_at,
        updated_at=api.started_at,
    )


@router.post("/assistants/search", response_model=list[Assistant])
async def search_assistants(*, body: AssistantSearch, api: Api) -> list[Assistant]:
    validation.check_nesting("metadata", body.metadata, api.settings.max_json_depth)
    names = api.manager.assistants()
    if body.graph_id is not None:
        names = [n for n in names if n == body.graph_id]
    if body.name is not None:
        names = [n for n in names if body.name in n]
    if body.metadata:  # assistants carry no metadata: nothing contains a non-empty filter
        names = []
    if body.sort_order == "desc":
        names.reverse()
    return [_assistant(api, n) for n in names[body.offset : body.offset + body.limit]]


@router.get("/assistants/{assistant_id}", response_model=Assistant)
async def get_assistant(*, assistant_id: str, api: Api) -> Assistant:
    if assistant_id not in api.manager.assistants():
        raise UnknownAssistantError(f"assistant {assistant_id!r} not found")
    return _assistant(api, assistant_id)
