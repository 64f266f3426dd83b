"""What every handler needs, kept on the FastAPI app: the registry, the keys, the settings,
and the count of open streams."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request

from runqueue.api.open_streams import OpenStreams
from runqueue.api.users import ApiKeys
from runqueue.registry import RunManager
from runqueue.settings import Settings


@dataclass
class ApiContext:
    manager: RunManager
    keys: ApiKeys
    settings: Settings
    auth_required: bool
    open_streams: OpenStreams  # each user's streams and waits open in this process
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def context(request: Request) -> ApiContext:
    return request.app.state.runqueue


Api = Annotated[ApiContext, Depends(context)]  # a handler's parameter: the API's context
