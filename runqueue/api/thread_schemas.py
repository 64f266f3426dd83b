"""The bodies of PATCH /threads/{id}, POST /threads/count, POST /threads/{id}/copy and POST
/threads/prune, with the reference server's field names."""

from __future__ import annotations

from pydantic import BaseModel, Field

from runqueue.api.schemas import (
    Json,
    PruneStrategyName,
    Strict,
    ThreadStatusName,
    ThreadTtlBody,
    refused_when_set,
)
from runqueue.registry import MAX_PRUNE_THREADS


class ThreadPatch(Strict):
    metadata: Json = Field(default_factory=dict)  # merged: its keys replace the thread's
    ttl: ThreadTtlBody | None = None  # replaces the thread's ttl; null: left as it is


class ThreadCopy(Strict):
    """No field: a copy takes nothing but the thread, and a field it does not know is
    refused (422), as every body's."""


class ThreadCount(Strict):
    metadata: Json | None = None
    values: Json | None = None  # count by values
    status: ThreadStatusName | None = None

    _refused = refused_when_set("values")


class ThreadPrune(Strict):
    thread_ids: list[str] = Field(max_length=MAX_PRUNE_THREADS)
    strategy: PruneStrategyName = "delete"


class ThreadsPruned(BaseModel):
    pruned_count: int
