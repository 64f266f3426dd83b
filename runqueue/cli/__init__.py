"""The terminal: the `runqueue` command, the demo and their Rich renderings."""

from runqueue.cli.main import main

__all__ = ["main"]
