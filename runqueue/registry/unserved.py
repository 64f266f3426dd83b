"""One warning line when a run names an assistant that no live worker serves."""

from __future__ import annotations

import time

from runqueue.registry.base import logger
from runqueue.settings import Settings
from runqueue.store import RunStore

FLEET_CACHE_SECONDS = 5.0  # create() reads which assistants live workers serve this often


class UnservedAssistants:
    """Warns, not refuses: runs may be created before the workers start. The fleet is read
    once per FLEET_CACHE_SECONDS (create is the hot path), and each assistant warned about
    once per read."""

    def __init__(self, store: RunStore, settings: Settings):
        self.store, self.settings = store, settings
        # (read again after, assistants live workers serve or None if unreadable)
        self._served: tuple[float, frozenset[str] | None] = (0.0, None)
        self._warned: set[str] = set()

    def warn_if_unserved(self, assistant_id: str) -> None:
        """One warning line when no live worker serves the assistant."""
        now = time.monotonic()
        read_after, served = self._served
        if now >= read_after:
            try:
                live = self.store.live_workers(self.settings.lease_seconds)
                served = frozenset(name for worker in live for name in worker.assistants)
            except Exception as exc:  # an older schema, a blip: no warning, the create goes on
                logger.debug("could not read the fleet: %s", exc)
                served = None
            self._served = (now + FLEET_CACHE_SECONDS, served)
            self._warned = set()
        if served is None or assistant_id in served or assistant_id in self._warned:
            return
        self._warned.add(assistant_id)
        logger.warning(
            "no live worker serves assistant %r: its runs stay pending until one does "
            "(workers serving it were not seen within the last %gs)",
            assistant_id,
            self.settings.lease_seconds,
            extra={"action": "unserved"},
        )
