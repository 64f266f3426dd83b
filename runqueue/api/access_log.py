"""The access log keeps what a client asked for, not what it sent: every query-string value
is masked (`/threads/search?api_key=***&wait=***`), parameter names kept, unless
Settings.log_payloads is "on" (debugging).

uvicorn's access log prints each request's path with its whole query string, so a key sent
as `?api_key=...` (refused: keys travel in `x-api-key`) was written to the log all the same.
"""

from __future__ import annotations

import logging

ACCESS_LOGGER = "uvicorn.access"
MASK = "***"


def mask_query(target: str) -> str:
    """The path with each query value replaced by ***; a bare `?token` (no `=`) is all
    value."""
    path, separator, query = target.partition("?")
    if not separator:
        return target
    masked = []
    for parameter in query.split("&"):
        name, equals, _value = parameter.partition("=")
        masked.append(f"{name}={MASK}" if equals else MASK if parameter else "")
    return f"{path}?{'&'.join(masked)}"


class QueryStringMask(logging.Filter):
    """Masks the query values in uvicorn's access lines: `%s - "%s %s HTTP/%s" %d`, whose
    third argument is the path with its query."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], mask_query(args[2]), *args[3:])
        return True


def install_query_string_mask() -> None:
    """Put the mask on uvicorn's access logger, once per process."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(existing, QueryStringMask) for existing in logger.filters):
        logger.addFilter(QueryStringMask())
