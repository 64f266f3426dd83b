"""A run request checked before anything is written: its values, its assistant, and the
assistant's own check of its kwargs."""

from __future__ import annotations

from collections.abc import Sequence

from runqueue import validation, webhooks
from runqueue.errors import RunQueueError, UnknownAssistantError
from runqueue.records import DisconnectMode, MultitaskStrategy
from runqueue.registry.assistants import as_uuid, default_assistant_id
from runqueue.registry.base import RegistryBase
from runqueue.registry.requests import RunOptions, RunRequest
from runqueue.store import NewRun
from runqueue.worker.task import RunTask


class RequestChecks(RegistryBase):
    """What the creating methods check, and validate_many() reports, without a database."""

    def validate_many(self, requests: Sequence[RunRequest]) -> list[RunQueueError | None]:
        """Why each request would be refused before anything is written (None: valid), as
        create_many() checks them: for a caller that reports every bad request at once
        (`runqueue submit --from`). Reads no database."""
        problems: list[RunQueueError | None] = []
        for request in requests:
            try:
                self._new_run_of(request)
            except RunQueueError as error:
                problems.append(error)
            else:
                problems.append(None)
        return problems

    def _new_run(self, thread_id: str, assistant_id: str | None, options: RunOptions) -> NewRun:
        """A request checked and made ready to write: the typed error of the first bad value."""
        limit, depth = self.settings.max_payload_bytes, self.settings.max_json_depth
        follow_up_to = options.get("follow_up_to_run_id")
        new = NewRun(
            run_id=validation.new_run_id(),
            thread_id=validation.thread_id(thread_id),
            assistant_id=self.assistant_name(assistant_id),
            user_id=validation.user_id(options.get("user_id")),
            multitask_strategy=validation.strategy(
                options.get("multitask_strategy", MultitaskStrategy.reject)
            ),
            on_disconnect=validation.disconnect_mode(
                options.get("on_disconnect", DisconnectMode.continue_)
            ).value,
            metadata=validation.json_object("metadata", options.get("metadata"), limit, depth),
            kwargs=validation.json_object("kwargs", options.get("kwargs"), limit, depth),
            follow_up_to_run_id=validation.run_id(follow_up_to) if follow_up_to else None,
            create_thread=validation.if_not_exists(options.get("if_not_exists", "create")),
            own_thread=bool(options.get("own_thread", False)),
            webhook=self._webhook(options.get("webhook")),
            after_seconds=validation.after_seconds(options.get("after")),
        )
        self.app.tasks[new.assistant_id].check_kwargs(new.thread_id, new.kwargs or {})
        return new

    def _webhook(self, url: str | None) -> str | None:
        """The webhook URL checked against the settings' allowed hosts (None: none)."""
        if url is None:
            return None
        return webhooks.check_url(url, self.settings.webhook_allowed_hosts)

    def _new_run_of(self, request: RunRequest) -> NewRun:
        return self._new_run(request.thread_id, request.assistant_id, request.options())

    def assistant_name(self, assistant_id: str | None) -> str:
        """The registered assistant a run names (the default if None; a default assistant's
        id names its graph); UnknownAssistantError if this app registers none by that name."""
        name = assistant_id or self.settings.default_assistant
        if not name:
            raise UnknownAssistantError("no assistant_id given and no default assistant is set")
        task = self.app.tasks.get(name)
        if not isinstance(task, RunTask) and as_uuid(name) is not None:  # a default's id
            defaults = {default_assistant_id(known): known for known in self.assistants()}
            name = defaults.get(as_uuid(name), name)
            task = self.app.tasks.get(name)
        if not isinstance(task, RunTask):
            known = ", ".join(self.assistants()) or "none"
            raise UnknownAssistantError(f"unknown assistant {name!r} (registered: {known})")
        return name

    def assistants(self) -> list[str]:
        """Names of the registered assistants."""
        return sorted(name for name, task in self.app.tasks.items() if isinstance(task, RunTask))
