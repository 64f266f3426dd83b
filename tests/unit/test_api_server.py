"""What `runqueue serve` hands uvicorn, and what the access log keeps of a query string."""

from __future__ import annotations

import logging

import pytest

from runqueue.api.access_log import QueryStringMask, install_query_string_mask, mask_query
from runqueue.api.server import server_options
from runqueue.settings import Settings


def test_no_proxy_is_trusted_by_default() -> None:
    options = server_options(Settings())
    assert options["proxy_headers"] is False
    assert options["http"] == "runqueue.api.protocol:LimitedH11Protocol"
    assert options["ws"] == "none"


def test_trusted_proxies_turn_proxy_headers_on_for_exactly_them() -> None:
    options = server_options(Settings(api_trusted_proxies=" 10.0.0.5, 172.16.0.0/12 ,"))
    assert options["proxy_headers"] is True
    assert options["forwarded_allow_ips"] == "10.0.0.5,172.16.0.0/12"


@pytest.mark.parametrize(
    ("target", "logged"),
    [
        ("/threads/search", "/threads/search"),
        ("/threads/search?api_key=rq_secret&wait=1", "/threads/search?api_key=***&wait=***"),
        ("/ok?rq_secret", "/ok?***"),
        ("/ok?a=&&b=x=y", "/ok?a=***&&b=***"),
        ("/ok?", "/ok?"),
    ],
)
def test_query_values_are_masked(target: str, logged: str) -> None:
    assert mask_query(target) == logged


def test_the_mask_rewrites_uvicorns_access_line() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/threads?api_key=rq_secret", "1.1", 401),
        None,
    )
    assert QueryStringMask().filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "GET /threads?api_key=*** HTTP/1.1" 401'
    install_query_string_mask()
    install_query_string_mask()
    masks = logging.getLogger("uvicorn.access").filters
    assert sum(isinstance(mask, QueryStringMask) for mask in masks) == 1
