"""The bodies of PATCH /threads/{id}, POST /threads/count and POST /threads/prune, with the
reference server's field names (POST /threads/{id}/copy takes none)."""

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
    ttl: ThreadTtlBody | None = None  # replaces the thread's ttl


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
