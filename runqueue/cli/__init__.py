"""The terminal: the `runqueue` command, the demo and their Rich renderings."""

from runqueue.cli.commands import main

__all__ = ["main"]
