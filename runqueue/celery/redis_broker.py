"""kombu's Redis transport, with a channel that outlives its connection failing cleanly.

A worker whose Redis restarts while it holds unacked runs could die with `Unrecoverable
error: AttributeError("'NoneType' object has no attribute 'hostname'")` (12 times in 10
restarts under 3 workers: tests/faults/test_broker_restarts.py). It takes an unacked message
and a waiting BRPOP (a worker with an idle slot). Celery's consumer, on losing the broker,
calls `Connection.collect()` and then `Connection.close()`. collect() closes the channels,
but the consumer's channel fails half-way (reading its outstanding BRPOP raises
ConnectionError), and collect() then detaches the transport from the Connection
(`transport.client = None`) while keeping that channel as the default one. close() closes it
again: its unacked messages are restored through a new Redis pool, whose parameters are read
from `transport.client`: the AttributeError, which no one catches (kombu and Celery ignore
only connection errors), so Celery stops the worker. The same lookup fails in kombu#582
(closed, not fixed); the minimal reproduction is in docs/reliability.md.

Here a channel whose transport was detached raises a ConnectionError instead, which every
caller already treats as the lost broker it is. Nothing is lost by not restoring: an
unacked message is still in Redis's unacked set (redelivered after the visibility timeout),
or Redis lost it with everything else and the relay publishes the run again.
Everything else is kombu's.

install() points kombu's `redis` and `rediss` schemes at this transport. Not
`broker_transport`: kombu turns TLS on for the `rediss` scheme name alone, writes the
scheme into every log line, and a failover switch resolves the URL's scheme again.
"""

from __future__ import annotations

from typing import Any

from kombu import transport as kombu_transports
from kombu.transport import redis
from redis.exceptions import ConnectionError as RedisConnectionError

SCHEMES = ("redis", "rediss")


class Channel(redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection is None or self.connection.client is None:
            raise RedisConnectionError("the broker connection of this channel was closed")
        return super()._connparams(asynchronous=asynchronous)


class Transport(redis.Transport):
    Channel = Channel


def install() -> None:
    """Make redis:// and rediss:// URLs use this transport in this process (idempotent)."""
    path = f"{__name__}:Transport"
    for scheme in SCHEMES:
        if kombu_transports.TRANSPORT_ALIASES.get(scheme) != path:
            kombu_transports.TRANSPORT_ALIASES[scheme] = path
            # kombu caches the class of each name it resolved: forget the old one.
            kombu_transports._transport_cache.pop(scheme, None)
