"""Keep payloads out of the logs: runs' kwargs and results, message bodies, SQL parameters
carry what users send (prompts, keys, personal data), and logs travel further than the
database. By default a log line carries ids, sizes and types; Settings.log_payloads "on"
(for debugging) lets them through.

Celery logs payloads in a few fixed messages (its templates below): a task's return value
at INFO ("Task x[id] succeeded in 0.02s: {...}"), and the body of a message it could not
use. A logging filter on those loggers rewrites exactly those arguments; everything else
passes unchanged. SQL parameters are hidden by SQLAlchemy itself (`hide_parameters`, set
by the store from the same setting).
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import consumer


def described(value: Any) -> str:
    """What a log line may say of a payload: its size (and type), never its content. Celery
    hands most payloads over already as text (a repr), so a size in characters."""
    if isinstance(value, str):
        return f"<hidden: {len(value)} characters>"
    if isinstance(value, bytes):
        return f"<hidden: {len(value)} bytes>"
    if isinstance(value, dict | list | tuple):
        return f"<hidden {type(value).__name__}: {len(value)} items>"
    return f"<hidden {type(value).__name__}>"


class PayloadFilter(logging.Filter):
    """Rewrites the payload arguments of Celery's own messages that carry one."""

    # Celery's message template -> the indexes of its arguments that hold payloads.
    POSITIONAL = {
        consumer.UNKNOWN_TASK_ERROR: (1, 2),  # the message body and headers
        consumer.INVALID_TASK_ERROR: (1,),  # the body
        consumer.MESSAGE_DECODE_ERROR: (3, 4),  # headers, body
        consumer.UNKNOWN_FORMAT: (0,),  # the whole message report
    }

    # The keys of a task's log context (celery.app.trace) that hold payloads: its template
    # prints return_value; a JSON handler would print the whole context, also kept as
    # record.data.
    CONTEXT_KEYS = ("return_value", "args", "kwargs")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, dict) and record.name == "celery.app.trace":
            record.args = self._context(record.args)
            if isinstance(getattr(record, "data", None), dict):
                record.data = self._context(record.data)
        elif record.msg in self.POSITIONAL and isinstance(record.args, tuple):
            hidden = self.POSITIONAL[record.msg]
            record.args = tuple(
                described(arg) if index in hidden else arg for index, arg in enumerate(record.args)
            )
        return True

    def _context(self, context: dict[str, Any]) -> dict[str, Any]:
        return {
            key: described(value) if key in self.CONTEXT_KEYS else value
            for key, value in context.items()
        }


PAYLOAD_LOGGERS = ("celery.app.trace", "celery.worker.consumer.consumer")
_filter = PayloadFilter()


def hide_payloads(hidden: bool = True) -> None:
    """Install the filter on Celery's loggers (or remove it, for log_payloads "on"). Every
    process that makes a runqueue app calls it; a forked pool child inherits it."""
    for name in PAYLOAD_LOGGERS:
        log = logging.getLogger(name)
        if hidden:
            if _filter not in log.filters:
                log.addFilter(_filter)
        else:
            log.removeFilter(_filter)
