"""Which broker queue a run's message goes to: one queue per assistant, per deployment.

A worker consumes the queues of the assistants it serves (runqueue.worker.queues), so a run
is only ever delivered to a worker that can execute it: a fleet whose workers serve
different assistants (graphs on GPU hosts, tools elsewhere) needs no routing set by hand,
and no worker takes a message it would have to discard as an unregistered task.

The deployment's id (the database's, migration 0009) is in the name, so two deployments
that share a broker by mistake (a stale staging worker, a copied `.env`) never consume each
other's runs: each reads only queues its own database named."""

from __future__ import annotations

from collections.abc import Iterable

from runqueue.runtime import Runtime


def run_queue(runtime: Runtime, assistant_id: str) -> str:
    """`<Settings.queue>.<deployment id>.<assistant>`: where runs of this assistant go."""
    return f"{runtime.settings.queue}.{runtime.deployment_id}.{assistant_id}"


def run_queues(runtime: Runtime, assistant_ids: Iterable[str]) -> list[str]:
    return [run_queue(runtime, assistant_id) for assistant_id in sorted(assistant_ids)]
