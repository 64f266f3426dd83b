"""Reading many run streams over one Redis connection: one shared reader per event loop, which
fans the entries out to every asyncio waiter (a stream follower, a join).

Without it every follower held a connection of its own in a blocked XREAD, so 300 SSE streams
took 300 Redis connections from the `maxclients` the Celery broker shares. A multiplexer holds
two things, whatever the number of waiters:
- one *blocking* connection, on which its loop sends `XREAD BLOCK ... STREAMS k1 k2 ... id1
  id2 ...` over every key a waiter waits on (at the lowest position any waiter of that key
  has) and hands each waiter what lies past its own position; waiters of one run at
  different positions share the key;
- a small pool (SHARED_CONNECTIONS) for everything that does not wait: a reader's
  non-blocking XREAD, which comes first, so replay and catching up never queue behind the
  loop, and the other commands (the head's `seq`, the wake below).

A new waiter whose key (or position) the XREAD in flight does not cover wakes it: its private
wake stream is part of every XREAD, and an XADD to it (MAXLEN 1, with an expiry, one Lua
script) ends the block at once, so the loop sends the XREAD again with the new key. The
wake's ids are a counter of this process, never the clock, and the loop reads the wake stream
from the last id it saw: a wake sent at any moment after the waiter registered ends the next
block, never lost between two XREADs. Wakes are coalesced: 300 waiters arriving at once cost
one or two XADDs. And most readers need none: a key whose waiters were just served stays in
the next XREAD, at the last number handed out, and a reader whose key the XREAD in flight
already covers skips its first look, so following a busy run costs no command of its own.

A waiter waits for its own deadline, never the loop's: a waiter cancelled (its client went
away) or out of time leaves the set and nothing else, and the connection and the other
waiters go on. An error of the XREAD (Redis down) is handed to every waiter, which the reader
turns into StreamUnavailableError; the next XREAD connects again, so the multiplexer
recovers by itself once Redis is back.

A multiplexer belongs to the event loop it was made in (uvicorn runs one per process; a
test's asyncio.run is another loop, and gets its own): its connections are that loop's, and
its loop task closes them when the loop shuts down (asyncio.run and uvicorn cancel the tasks
left, and the task's `finally` runs).

Why written here: redis-py has no shared XREAD. Its asyncio client sends one command at a time
per connection, so a blocked XREAD keeps its connection from everyone else; its PubSub shares
one connection among channels, but run streams are Streams (numbered, replayable from any
position), not channels. saq's pub/sub multiplexer is the model; this is the same idea for
XREAD.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from runqueue.stream.transport import Entry

logger = logging.getLogger(__name__)

CLIENT_NAME = "runqueue-api-stream"  # how CLIENT LIST names the multiplexer's connections
SHARED_CONNECTIONS = 3  # the pool of non-blocking reads and other commands, at most
BLOCK_SECONDS = 10.0  # one XREAD's block; waiters keep their own, shorter, deadlines
WAKE_PREFIX = "runqueue:stream-wake:"
WAKE_TTL_MS = 60_000  # a wake stream that no process wakes any more is gone after this

# KEYS: the wake stream. ARGV: the entry's id, the expiry in ms.
WAKE = """
redis.call('XADD', KEYS[1], 'MAXLEN', '1', ARGV[1], 'w', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""


def entries_of(items: list[Any]) -> list[Entry]:
    """One stream's part of an XREAD reply ([(id, fields), ...]) as entries."""
    return [
        Entry(seq=int(entry_id.partition("-")[2]), event=fields["e"], data=fields["d"])
        for entry_id, fields in items
    ]


def _by_key(reply: Any) -> list[tuple[str, list[Any]]]:
    """An XREAD reply as (key, items) pairs: RESP2's [[key, items], ...], or RESP3's dict,
    {key: [items]} (redis-py wraps them once more there; an item is a tuple)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [
            (key, items[0] if items and isinstance(items[0], list) else items)
            for key, items in reply.items()
        ]
    return [(key, items) for key, items in reply]


def entries_of_reply(reply: Any) -> list[Entry]:
    """A one-stream XREAD reply as entries."""
    return [entry for _key, items in _by_key(reply) for entry in entries_of(items)]


@dataclass(eq=False)
class _Waiter:
    """One read waiting for entries of `key` past `after`."""

    key: str
    after: int
    count: int
    future: asyncio.Future[list[Entry]]


class StreamMultiplexer:
    """One blocking XREAD over every key this event loop's waiters wait on."""

    def __init__(
        self,
        url: str,
        *,
        block_seconds: float = BLOCK_SECONDS,
        on_close: Callable[[StreamMultiplexer], None] | None = None,
    ):
        self.url = url
        self.block_ms = max(1, int(block_seconds * 1000))
        self.closed = False
        self._on_close = on_close
        # Non-blocking reads and every other command: a few connections, waited for when
        # all are busy (BlockingConnectionPool), never one per stream. They outlive a Redis
        # restart, so a command that meets a connection the restart closed is sent once more,
        # on a new one.
        self.pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            max_connections=SHARED_CONNECTIONS,
            decode_responses=True,
            client_name=CLIENT_NAME,
            retry=Retry(NoBackoff(), 1),
        )
        self.client = redis.asyncio.Redis(connection_pool=self.pool)
        # The one connection that blocks. Its socket timeout outlasts the block, so a Redis
        # that stops answering (a partition) is an error rather than a hang; and one retry,
        # the same.
        self._blocking = redis.asyncio.Redis.from_url(
            url,
            max_connections=1,
            decode_responses=True,
            client_name=CLIENT_NAME,
            socket_timeout=block_seconds + 5.0,
            retry=Retry(NoBackoff(), 1),
        )
        self._wake_script = self.client.register_script(WAKE)
        self.wake_key = f"{WAKE_PREFIX}{{{uuid.uuid4().hex}}}"
        self._wake_seen = "0-0"  # the last wake the loop has read
        self._wakes = 0  # wakes sent; the last one's id is 0-<wakes>
        self._wake_wanted = False
        self._waker: asyncio.Task[None] | None = None
        self._waiters: dict[str, set[_Waiter]] = {}
        self._blocked: dict[str, int] | None = None  # the XREAD in flight: key -> position
        # Keys whose waiters were just served, at the last number handed out: the next XREAD
        # keeps them, so that a reader coming back for more finds its key covered (no wake).
        self._served: dict[str, int] = {}
        self._wanted = asyncio.Event()  # there are waiters
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._serve(), name="runqueue-stream-multiplexer")

    # -- waiters ------------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """Reads waiting now."""
        return sum(len(waiters) for waiters in self._waiters.values())

    async def read(self, key: str, after: int, *, block: float, count: int) -> list[Entry]:
        """Up to `count` entries of stream `key` numbered above `after`; when there are none,
        wait up to `block` seconds for one (0: do not wait)."""
        if block > 0 and self._covers(key, after):
            # The XREAD in flight reads `key` from `after` or below, and its reply is not
            # handed out yet: anything past `after` comes with it (or with the next one, if
            # its count falls short), so a first look would find nothing more.
            return await self.wait(key, after, block=block, count=count)
        entries = entries_of_reply(await self.client.xread({key: f"0-{after}"}, count=count))
        if entries or block <= 0:
            return entries
        return await self.wait(key, after, block=block, count=count)

    def _covers(self, key: str, after: int) -> bool:
        """An XREAD is in flight and reads `key` from `after` or below."""
        blocked = self._blocked
        return blocked is not None and blocked.get(key, after + 1) <= after

    async def wait(self, key: str, after: int, *, block: float, count: int) -> list[Entry]:
        """read() without its first look: wait up to `block` seconds for entries of `key`
        past `after`, through the shared XREAD (which returns at once those already there)."""
        if self.closed:
            raise RuntimeError("the stream multiplexer is closed (its event loop ended)")
        waiter = _Waiter(key, after, count, self._loop.create_future())
        self._waiters.setdefault(key, set()).add(waiter)
        self._wanted.set()
        if self._blocked is not None and not self._covers(key, after):
            # The XREAD in flight does not cover this waiter (a new key, or a position
            # below the one it reads from): end its block, so that the next one does.
            self._wake()
        try:
            await asyncio.wait({waiter.future}, timeout=block)
            return waiter.future.result() if waiter.future.done() else []
        finally:
            self._forget(waiter)

    def _forget(self, waiter: _Waiter) -> None:
        waiters = self._waiters.get(waiter.key)
        if waiters is not None:
            waiters.discard(waiter)
            if not waiters:
                del self._waiters[waiter.key]
        if not waiter.future.done():
            waiter.future.cancel()

    # -- waking the blocked XREAD -------------------------------------------------------------

    def _wake(self) -> None:
        self._wake_wanted = True
        if self._waker is None or self._waker.done():
            self._waker = self._loop.create_task(self._send_wakes())

    async def _send_wakes(self) -> None:
        """XADD to the wake stream until no waiter asked for a wake since the last one was
        sent (a waiter that registers while an XADD is on its way asks again)."""
        while self._wake_wanted and not self.closed:
            self._wake_wanted = False
            self._wakes += 1
            try:
                await self._wake_script(
                    keys=[self.wake_key], args=[f"0-{self._wakes}", WAKE_TTL_MS]
                )
            except Exception as exc:  # noqa: BLE001 - the XREAD meets the same Redis: it reports
                # The new waiters wait until their deadline, then read again.
                logger.warning("could not wake the stream reader: %s", exc)
                return

    # -- the loop -----------------------------------------------------------------------------

    async def _serve(self) -> None:
        try:
            while True:
                if not self._waiters:
                    self._served.clear()
                    self._wanted.clear()
                    await self._wanted.wait()
                    continue
                positions = {
                    key: min(waiter.after for waiter in waiters)
                    for key, waiters in self._waiters.items()
                }
                for key, served in self._served.items():  # for one XREAD only
                    positions[key] = min(served, positions.get(key, served))
                self._served = {}
                count = max(w.count for waiters in self._waiters.values() for w in waiters)
                streams = {key: f"0-{position}" for key, position in positions.items()}
                streams[self.wake_key] = self._wake_seen
                self._blocked = positions
                try:
                    reply = await self._blocking.xread(streams, count=count, block=self.block_ms)
                except Exception as exc:  # noqa: BLE001 - every waiter hears of it, and reads again
                    self._fail(exc)
                    continue
                finally:
                    self._blocked = None
                self._deliver(reply, positions)
        finally:
            await self._shut()

    def _deliver(self, reply: Any, positions: dict[str, int]) -> None:
        """Each waiter's entries past its own position; a waiter with none waits on. So does
        a waiter below the position the XREAD read its key from (it came while the XREAD was
        in flight): the reply lacks the entries between, and the next XREAD starts lower."""
        for key, items in _by_key(reply):
            if key == self.wake_key:
                if items:
                    self._wake_seen = items[-1][0]
                continue
            waiters = self._waiters.get(key)
            if not waiters or not items:
                continue
            entries = entries_of(items)
            for waiter in list(waiters):
                if waiter.after < positions.get(key, waiter.after):
                    continue
                mine = [entry for entry in entries if entry.seq > waiter.after][: waiter.count]
                if mine:
                    waiters.discard(waiter)
                    last = mine[-1].seq
                    self._served[key] = min(last, self._served.get(key, last))
                    if not waiter.future.done():
                        waiter.future.set_result(mine)
            if not waiters:
                del self._waiters[key]

    def _fail(self, error: Exception) -> None:
        """The XREAD failed: every waiter gets the error (and leaves the set)."""
        waiters = [waiter for waiters in self._waiters.values() for waiter in waiters]
        self._waiters.clear()
        self._served.clear()
        for waiter in waiters:
            if not waiter.future.done():
                waiter.future.set_exception(error)

    async def _shut(self) -> None:
        self.closed = True
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.future.cancel()
        self._waiters.clear()
        if self._waker is not None:
            self._waker.cancel()
        if self._on_close is not None:
            self._on_close(self)
        with contextlib.suppress(Exception):
            await self._blocking.aclose()
        with contextlib.suppress(Exception):
            await self.client.aclose()
            await self.pool.aclose()

    async def aclose(self) -> None:
        """Stop the loop and close the connections (the loop's end does it too)."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
