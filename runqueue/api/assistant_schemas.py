"""The bodies of the assistant routes (runqueue/api/assistants.py), with the reference
server's field names."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from runqueue.api.schemas import Assistant, Json, Strict
from runqueue.records import AssistantRecord
from runqueue.registry import MAX_PAGE


class AssistantCreate(Strict):
    graph_id: str = Field(max_length=255)
    assistant_id: str | None = Field(None, max_length=64)
    config: Json | None = None
    context: Json | None = None
    metadata: Json | None = None
    if_exists: Literal["raise", "do_nothing"] = "raise"
    name: str | None = Field(None, max_length=1000)
    description: str | None = Field(None, max_length=10000)


class AssistantPatch(Strict):
    graph_id: str | None = Field(None, max_length=255)
    config: Json | None = None
    context: Json | None = None
    metadata: Json | None = None
    name: str | None = Field(None, max_length=1000)
    description: str | None = Field(None, max_length=10000)


class AssistantCount(Strict):
    metadata: Json | None = None
    graph_id: str | None = None
    name: str | None = None


class AssistantVersionsSearch(Strict):
    metadata: Json | None = None
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=MAX_PAGE)


class AssistantVersionChange(Strict):
    version: int = Field(ge=1)


class AssistantVersion(BaseModel):
    """One version of an assistant, as the reference lists it (no updated_at: a version
    is never changed)."""

    assistant_id: str
    version: int
    graph_id: str
    config: Json
    context: Json
    metadata: Json
    created_at: datetime
    name: str
    description: str | None = None


def version_body(record: AssistantRecord) -> AssistantVersion:
    return AssistantVersion(
        assistant_id=record.assistant_id,
        version=record.version,
        graph_id=record.graph_id,
        config=record.config,
        context=record.context,
        metadata=record.metadata,
        created_at=record.created_at,
        name=record.name,
        description=record.description,
    )


def assistant_body(record: AssistantRecord) -> Assistant:
    """An assistant as the reference shows it."""
    return Assistant(
        assistant_id=record.assistant_id,
        graph_id=record.graph_id,
        name=record.name,
        description=record.description,
        config=record.config,
        context=record.context,
        metadata=record.metadata,
        version=record.version,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )
