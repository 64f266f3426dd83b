"""A thread's state, its history and time travel: read at any checkpoint, updated between
runs. The thread's assistant keeps its state (a graph's checkpoints, a plain assistant's
own): the assistant of its latest run, else the one its metadata names (`assistant_id` or
`graph_id`, as run creation stamps them and a thread copy keeps them)."""

from __future__ import annotations

import re
from typing import Any

from runqueue import validation
from runqueue.errors import (
    CheckpointNotFoundError,
    InvalidPayloadError,
    NoThreadGraphError,
    ThreadNotFoundError,
    UnknownAssistantError,
)
from runqueue.records import CheckpointRef, ThreadState
from runqueue.registry.assistants import as_uuid, default_assistant_id
from runqueue.registry.base import RegistryBase, logger
from runqueue.worker.task import RunTask

CHECKPOINT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")  # LangGraph's: UUIDs
CHECKPOINT_NS_PATTERN = re.compile(r"[^\x00-\x1f]{0,1000}")
METADATA_KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")  # filtered alike on both databases
MAX_HISTORY = 1000  # the most checkpoints one history read returns, as the reference server
CheckpointArgument = CheckpointRef | dict[str, Any] | None
CHECKPOINT_FIELDS = frozenset({"thread_id", "checkpoint_id", "checkpoint_ns", "checkpoint_map"})


class ThreadStateRegistry(RegistryBase):
    """state(), state_at(), history() and update_state(), for graph and plain assistants."""

    def state(self, thread_id: str, *, subgraphs: bool = False) -> ThreadState:
        """The thread's current state, as the thread's assistant keeps it: a graph's values,
        next tasks and pending interrupts (`subgraphs`: each subgraph's state nested in its
        task), or a plain assistant's latest checkpoint. Values None: no state yet."""
        thread_id = validation.thread_id(thread_id)
        task = self._assistant_of(thread_id)
        if task is None:
            return ThreadState(thread_id=thread_id, values=None)
        return task.thread_state(thread_id, subgraphs=subgraphs)

    def state_at(
        self,
        thread_id: str,
        checkpoint: str | CheckpointArgument,
        *,
        subgraphs: bool = False,
    ) -> ThreadState:
        """The thread's state at one checkpoint: its id, or a `checkpoint` object
        (checkpoint_id, checkpoint_ns, checkpoint_map) as the API takes it (an empty one:
        the latest). CheckpointNotFoundError if the thread has none by that id."""
        thread_id = validation.thread_id(thread_id)
        if isinstance(checkpoint, str):
            checkpoint = {"checkpoint_id": checkpoint}
        wanted = checkpoint_of(thread_id, checkpoint)  # None (an empty one): the latest
        task = self._assistant_of(thread_id)
        if task is None:
            return _no_state(thread_id, wanted)
        return task.thread_state(thread_id, checkpoint=wanted, subgraphs=subgraphs)

    def history(
        self,
        thread_id: str,
        *,
        limit: int = 10,
        before: str | CheckpointArgument = None,
        metadata: dict[str, Any] | None = None,
        checkpoint: CheckpointArgument = None,
    ) -> list[ThreadState]:
        """The thread's checkpoints, newest first, each naming its parent (the one it was
        written after): at most `limit` (1 to 1000); older than `before` (a checkpoint id, a
        `checkpoint` object naming one, or a config `{"configurable": {"checkpoint_id"}}`);
        whose metadata holds every key of `metadata` (`{"source": "update"}`); in
        `checkpoint`'s namespace, or only the checkpoint it names. Empty for a thread with
        no state."""
        thread_id = validation.thread_id(thread_id)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_HISTORY:
            raise InvalidPayloadError(f"limit must be an integer from 1 to {MAX_HISTORY}")
        if isinstance(before, str):
            before = {"checkpoint_id": before}
        elif isinstance(before, dict) and set(before) == {"configurable"}:
            before = before["configurable"]  # a LangGraph config naming the checkpoint
        older = checkpoint_of(thread_id, before)
        if before is not None and (older is None or older.checkpoint_id is None):
            raise InvalidPayloadError("before must name a checkpoint_id")
        wanted = self._json_argument("metadata", metadata) if metadata is not None else None
        for key in wanted or {}:
            if not METADATA_KEY_PATTERN.fullmatch(key):  # SQLite's saver refuses, or reads a
                raise InvalidPayloadError(  # dotted key as a path where PostgreSQL does not
                    f"metadata filter key {validation.shown(key)}: letters, digits, _ and - only"
                )
        task = self._assistant_of(thread_id)
        if task is None:
            if older is not None:
                _no_state(thread_id, older)  # CheckpointNotFoundError: none to be older than
            return []
        if older is not None:  # LangGraph compares ids as text: an unknown one is no error
            task.thread_state(thread_id, checkpoint=older)  # CheckpointNotFoundError (404)
        return task.thread_history(
            thread_id,
            limit=limit,
            before=older.checkpoint_id if older is not None else None,
            metadata=wanted,
            checkpoint=checkpoint_of(thread_id, checkpoint),
        )

    def update_state(
        self,
        thread_id: str,
        values: Any,
        *,
        as_node: str | None = None,
        checkpoint: CheckpointArgument = None,
        checkpoint_id: str | None = None,
        user_id: str | None = None,
    ) -> CheckpointRef:
        """Write a new checkpoint of the thread's graph, as LangGraph's update_state() makes
        it (metadata `source: update`): `values` as if node `as_node` had returned them,
        after the latest checkpoint or the one named (`checkpoint`, or `checkpoint_id`).
        Returns the checkpoint written. One transaction under the thread lock: while a run
        of the thread is pending or running it is refused (ThreadBusyError), so it never
        lands inside a run's writes. NoThreadGraphError if the thread has no graph,
        InvalidStateUpdateError if the graph refuses the update: nothing written."""
        thread_id = validation.thread_id(thread_id)
        if checkpoint is None and checkpoint_id is not None:
            checkpoint = {"checkpoint_id": checkpoint_id}
        wanted = checkpoint_of(thread_id, checkpoint)
        named = checkpoint_of(thread_id, {"checkpoint_id": checkpoint_id or None})
        if named is not None and named.checkpoint_id != getattr(wanted, "checkpoint_id", None):
            raise InvalidPayloadError(
                "checkpoint_id, checkpoint.checkpoint_id: two different checkpoints given; an "
                "update is written after one"
            )
        if values is not None:
            self._json_argument("values", {"values": values})
        if as_node is not None and not isinstance(as_node, str):
            raise InvalidPayloadError("as_node must be the name of a node of the graph")
        task = self._assistant_of(thread_id, must_exist=True)
        if task is None:
            raise NoThreadGraphError(
                f"thread {thread_id} has no graph: make a run on it first, or name one in its "
                "metadata (graph_id)"
            )
        written = task.update_thread_state(
            thread_id,
            values,
            as_node=as_node,
            checkpoint=wanted,
            user_id=validation.user_id(user_id),
        )
        logger.info(
            "thread %s: state updated, checkpoint %s",
            thread_id,
            written.checkpoint_id,
            extra={"thread_id": thread_id, "action": "state_updated"},
        )
        return written

    def _json_argument(self, name: str, value: Any) -> dict[str, Any]:
        """A JSON object within this app's size and nesting limits."""
        settings = self.settings
        return validation.json_object(
            name, value, settings.max_payload_bytes, settings.max_json_depth
        )

    def _assistant_of(self, thread_id: str, *, must_exist: bool = False) -> RunTask | None:
        """The assistant that keeps the thread's state: its latest run's (UnknownAssistantError
        if this app does not register it), else the first registered one its metadata names
        (`assistant_id`, then `graph_id`: the reference stamps a UUID and the graph's name);
        None if neither. ThreadNotFoundError (`must_exist`) for an unknown thread."""
        latest = self.queries.list_by_thread(thread_id, user_id=None, status=None, limit=1)
        if not latest:
            view = self.store.get_thread(thread_id, None)
            if view is None and must_exist:
                raise ThreadNotFoundError(f"thread {thread_id} not found")
            metadata = (view.thread.metadata or {}) if view is not None else {}
            named = (metadata.get(key) for key in ("assistant_id", "graph_id"))
            found = (self.app.tasks.get(graph_of(self, n)) for n in named if isinstance(n, str))
            return next((task for task in found if isinstance(task, RunTask)), None)
        task = self.app.tasks.get(latest[0].assistant_id)
        if not isinstance(task, RunTask):
            raise UnknownAssistantError(
                f"thread {thread_id}'s latest run is of assistant "
                f"{validation.shown(latest[0].assistant_id)}, which this app does not register: "
                "its state cannot be read or written here"
            )
        return task


def graph_of(registry: ThreadStateRegistry, named: str) -> str:
    """The registered name a thread's metadata means: itself, the graph of a default
    assistant's id (uuid5 of the name) or of a stored assistant's (one read)."""
    if named in registry.app.tasks:
        return named
    canonical = as_uuid(named)
    if canonical is None:
        return named
    defaults = {default_assistant_id(name): name for name in registry.app.tasks}
    if canonical in defaults:
        return defaults[canonical]
    stored = registry.store.get_assistant(canonical, None)
    return stored.graph_id if stored is not None else named


def checkpoint_of(thread_id: str, checkpoint: CheckpointArgument) -> CheckpointRef | None:
    """A checkpoint argument checked (InvalidPayloadError): an object with any of
    checkpoint_id, checkpoint_ns, checkpoint_map (and thread_id, which must be this
    thread's, if given); None for none or an empty one."""
    if checkpoint is None or isinstance(checkpoint, CheckpointRef):
        return checkpoint
    if not isinstance(checkpoint, dict):
        raise InvalidPayloadError("checkpoint must be an object (checkpoint_id, checkpoint_ns)")
    unknown = sorted(set(checkpoint) - CHECKPOINT_FIELDS)
    if unknown:
        raise InvalidPayloadError(f"checkpoint has no field {validation.shown(unknown[0])}")
    given = checkpoint.get("thread_id")
    if given is not None and given != thread_id:
        raise InvalidPayloadError(
            f"checkpoint.thread_id is {validation.shown(given)}, not this thread ({thread_id})"
        )
    checkpoint_id = checkpoint.get("checkpoint_id")
    if isinstance(checkpoint_id, str) and validation.UUID_PATTERN.fullmatch(checkpoint_id.lower()):
        checkpoint_id = checkpoint_id.lower()  # as LangGraph writes them, and as forks read them
    if checkpoint_id is not None and not (
        isinstance(checkpoint_id, str) and CHECKPOINT_ID_PATTERN.fullmatch(checkpoint_id)
    ):
        raise InvalidPayloadError(f"invalid checkpoint id: {validation.shown(checkpoint_id)}")
    namespace = checkpoint.get("checkpoint_ns") or ""
    if not (isinstance(namespace, str) and CHECKPOINT_NS_PATTERN.fullmatch(namespace)):
        raise InvalidPayloadError(f"invalid checkpoint_ns: {validation.shown(namespace)}")
    checkpoint_map = checkpoint.get("checkpoint_map")
    if checkpoint_map is not None and not isinstance(checkpoint_map, dict):
        raise InvalidPayloadError("checkpoint.checkpoint_map must be an object")
    if checkpoint_id is None and not namespace and not checkpoint_map:
        return None
    return CheckpointRef(thread_id, checkpoint_id, namespace, checkpoint_map or None)


def _no_state(thread_id: str, checkpoint: CheckpointRef | None) -> ThreadState:
    """A thread with no assistant has no checkpoint: not the one asked for either."""
    if checkpoint is None or checkpoint.checkpoint_id is None:
        return ThreadState(thread_id=thread_id, values=None)
    raise CheckpointNotFoundError(
        f"thread {thread_id} has no checkpoint {checkpoint.checkpoint_id}"
    )
