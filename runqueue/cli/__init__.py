"""The terminal: the `runqueue` command, the demo and their Rich renderings."""

from runqueue.cli import api_commands  # noqa: F401  (registers serve and api-key)
from runqueue.cli.commands import main

__all__ = ["main"]
