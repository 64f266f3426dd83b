"""The terminal: the `runqueue` command, the demo and their Rich renderings."""

from runqueue.cli import (
    api_commands,  # noqa: F401  (registers serve and api-key)
    assistant_commands,  # noqa: F401  (registers assistant)
    cron_commands,  # noqa: F401  (registers crons)
    fleet_commands,  # noqa: F401  (registers workers and health)
    flower_commands,  # noqa: F401  (registers flower)
    history_commands,  # noqa: F401  (registers history)
    run_commands,  # noqa: F401  (registers submit and cancel)
    store_commands,  # noqa: F401  (registers store namespaces and store items)
    thread_commands,  # noqa: F401  (registers prune-threads)
    views,  # noqa: F401  (registers runs, show, threads and assistants)
)
from runqueue.cli.commands import main

__all__ = ["main"]
