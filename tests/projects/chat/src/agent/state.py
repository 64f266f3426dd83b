"""The state every graph of this project shares."""

from __future__ import annotations

from typing import TypedDict


class State(TypedDict, total=False):
    name: str
    reply: str
