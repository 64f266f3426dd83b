"""What a process of the fleet holds for its runs: the settings, the store and the stream.

One Runtime per Celery app (create_app builds it; runqueue.celery.app.runtime_of finds it
from the app at Celery's entry points: signals, the task base, bootsteps). Everything below
those entry points takes the Runtime as an argument, so a reader sees what a function
uses without looking the app up."""

from __future__ import annotations

from dataclasses import dataclass

from runqueue.settings import Settings
from runqueue.store import RunStore
from runqueue.stream import RunStream, open_stream


@dataclass(frozen=True)
class Runtime:
    """What signal handlers, tasks and maintenance need: settings, the store, the stream."""

    settings: Settings
    store: RunStore
    stream: RunStream

    @classmethod
    def open(cls, settings: Settings) -> Runtime:
        """The store and the stream these settings name (nothing connects before first use)."""
        return cls(
            settings=settings,
            store=RunStore(
                settings.database_url,
                settings.republish_after,
                settings.database_pool_size,
                hide_parameters=settings.log_payloads != "on",
            ),
            stream=open_stream(settings),
        )

    @property
    def deployment_id(self) -> str:
        """The id the database gave itself (read once): the runs' broker queues carry it.
        Kept without a lock (functools.cached_property takes one on Python 3.11, which a
        pool child forked during the read would inherit held); a read is idempotent."""
        known = self.__dict__.get("_deployment_id")
        if known is None:
            known = self.store.deployment_id()
            object.__setattr__(self, "_deployment_id", known)
        return known
