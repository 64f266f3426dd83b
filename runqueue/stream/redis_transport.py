"""Run streams in Redis: one Stream per run (XADD with a MAXLEN cap, XREAD BLOCK) and a small
hash beside it, the head: `seq` (the last number given), `owner` and `attempt` (the claim
token allowed to append, and its attempt number) and `ended` (the final status).

Entry ids are `0-<seq>`: explicit and gap-free, so a reader resuming after n knows that the
next entry must be n + 1, and that anything else means events were trimmed or lost. Both keys
share a hash tag, so a cluster keeps them on one node for the scripts. Appends, the end and
the keep-alive are Lua scripts, registered once per client: the fence check and the write are
one atomic step.

Expiry: a stream gets the retention (Settings.stream_retention_seconds) when its `end` is
written. Before that it carries a keep-alive of at least an hour, set when an attempt opens
it and pushed out again at every lease renewal (touch): a running run's stream never expires
however quiet it is, and one whose `end` was never written (its writer died between the
final status and the stream, and nobody read it since) does not stay in Redis forever.

Readers: read() blocks on this transport's own client, for a thread (follow, wait_for_end).
Async readers (the HTTP API's streams and waits) read through their event loop's one
StreamMultiplexer (redis_multiplexer.py): one blocking connection per process, not one each.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import redis
import redis.exceptions

from runqueue.errors import StreamUnavailableError, first_line
from runqueue.settings import redact_url
from runqueue.stream.redis_multiplexer import StreamMultiplexer, entries_of_reply
from runqueue.stream.transport import (
    Appended,
    AppendOutcome,
    AsyncReader,
    Entry,
    StreamTransport,
)

KEY_PREFIX = "runqueue:stream:"
KEEP_ALIVE_SECONDS = 3600.0  # at least; the expiry of a stream that has not ended
# What a Redis that is down, restarting, or read-only after a failover raises.
UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ReadOnlyError)

# KEYS: events, head. ARGV: mode ("open" | "append"), token, maxlen, attempt, floor,
# keep-alive ms, then event, data pairs. Returns the last new entry's number; -1: the stream
# ended, -2: another token owns it (or a later attempt opened it), -3: no stream.
APPEND = """
if redis.call('HEXISTS', KEYS[2], 'ended') == 1 then return -1 end
if ARGV[1] == 'open' then
  local attempt = tonumber(ARGV[4])
  if tonumber(redis.call('HGET', KEYS[2], 'attempt') or '0') >= attempt then return -2 end
  if attempt > 1 and redis.call('EXISTS', KEYS[2]) == 0 then
    -- An earlier attempt's stream was lost (Redis restarted): number on above anything it
    -- can have written, so that readers see a gap instead of numbers starting over.
    redis.call('HSET', KEYS[2], 'seq', ARGV[5])
  end
  redis.call('HSET', KEYS[2], 'owner', ARGV[2], 'attempt', ARGV[4])
else
  local owner = redis.call('HGET', KEYS[2], 'owner')
  if not owner then return -3 end
  if owner ~= ARGV[2] then return -2 end
end
local seq = 0
for i = 7, #ARGV, 2 do
  seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '0-' .. seq, 'e', ARGV[i], 'd', ARGV[i + 1])
end
if ARGV[1] == 'open' then
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
return seq
"""

# KEYS: events, head. ARGV: token, seq, attempt, keep-alive ms. Returns 1 if the head was
# recreated, 0 if it exists.
REOPEN = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[2], 'owner', ARGV[1], 'seq', ARGV[2], 'attempt', ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
"""

# KEYS: events, head. ARGV: keep-alive ms. Pushes out the expiry of a stream not yet ended.
TOUCH = """
if redis.call('EXISTS', KEYS[2]) == 0 or redis.call('HEXISTS', KEYS[2], 'ended') == 1 then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1
"""

# KEYS: events, head. ARGV: create ("1" | "0"), retention ms, maxlen, status, then
# event, data pairs. Returns 1 if sealed now, 0 if it had ended (or is missing, create "0").
SEAL = """
if redis.call('HEXISTS', KEYS[2], 'ended') == 1 then return 0 end
if ARGV[1] == '0' and redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
for i = 5, #ARGV, 2 do
  local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '0-' .. seq, 'e', ARGV[i], 'd', ARGV[i + 1])
end
redis.call('HSET', KEYS[2], 'ended', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""

REFUSALS = {-1: AppendOutcome.ended, -2: AppendOutcome.not_owner, -3: AppendOutcome.missing}


def _keys(run_id: str) -> list[str]:
    return [f"{KEY_PREFIX}{{{run_id}}}", f"{KEY_PREFIX}{{{run_id}}}:head"]


def _block_ms(block: float) -> int | None:
    """XREAD's BLOCK: None does not wait (0 would wait forever)."""
    return max(1, int(block * 1000)) if block > 0 else None


@contextlib.contextmanager
def _unavailable_as_error(url: str) -> Iterator[None]:
    try:
        yield
    except UNAVAILABLE as exc:
        raise StreamUnavailableError(
            f"run stream unavailable ({redact_url(url)}): {first_line(exc)}"
        ) from exc


class RedisStreamTransport(StreamTransport):
    """Run streams in the Redis at `url` (by default the broker's)."""

    def __init__(self, url: str, *, retention_seconds: float, max_events: int):
        super().__init__(url, retention_seconds=retention_seconds, max_events=max_events)
        # Connections are made on first use; redis-py's pool starts afresh in a forked child.
        self.client = redis.Redis.from_url(url, decode_responses=True)
        self.keep_alive_ms = int(max(KEEP_ALIVE_SECONDS, retention_seconds) * 1000)
        self._append = self.client.register_script(APPEND)
        self._reopen = self.client.register_script(REOPEN)
        self._touch = self.client.register_script(TOUCH)
        self._seal = self.client.register_script(SEAL)
        # Async readers share one multiplexer per event loop (redis_multiplexer.py).
        self._multiplexers: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, StreamMultiplexer
        ] = weakref.WeakKeyDictionary()
        self._multiplexers_lock = threading.Lock()

    def _call_append(
        self, mode: str, run_id: str, token: str, attempt: int, entries: list[tuple[str, str]]
    ) -> Appended:
        floor = int(time.time() * 1000)  # used only to open a stream an earlier attempt lost
        args: list[object] = [mode, token, self.max_events, attempt, floor, self.keep_alive_ms]
        for event, data in entries:
            args += [event, data]
        with _unavailable_as_error(self.url):
            seq = self._append(keys=_keys(run_id), args=args)
        if seq > 0:
            return Appended(AppendOutcome.appended, seq)
        return Appended(REFUSALS[seq])

    def open(self, run_id: str, token: str, attempt: int, event: str, data: str) -> Appended:
        return self._call_append("open", run_id, token, attempt, [(event, data)])

    def append(self, run_id: str, token: str, entries: list[tuple[str, str]]) -> Appended:
        return self._call_append("append", run_id, token, 0, entries)

    def reopen(self, run_id: str, token: str, attempt: int, after_seq: int) -> bool:
        with _unavailable_as_error(self.url):
            args = [token, after_seq, attempt, self.keep_alive_ms]
            return self._reopen(keys=_keys(run_id), args=args) == 1

    def touch(self, run_id: str) -> None:
        with _unavailable_as_error(self.url):
            self._touch(keys=_keys(run_id), args=[self.keep_alive_ms])

    def seal(
        self, run_id: str, status: str, entries: list[tuple[str, str]], *, create: bool
    ) -> bool:
        retention_ms = max(1, int(self.retention_seconds * 1000))
        args: list[Any] = ["1" if create else "0", retention_ms, self.max_events, status]
        for event, data in entries:
            args += [event, data]
        with _unavailable_as_error(self.url):
            return self._seal(keys=_keys(run_id), args=args) == 1

    def read(self, run_id: str, after: int, *, block: float, count: int) -> list[Entry]:
        streams = {_keys(run_id)[0]: f"0-{after}"}
        with _unavailable_as_error(self.url):
            return entries_of_reply(self.client.xread(streams, count=count, block=_block_ms(block)))

    def async_reader(self) -> AsyncReader:
        return RedisAsyncReader(self)

    def multiplexer(self) -> StreamMultiplexer:
        """The running event loop's multiplexer, made at its first reader."""
        loop = asyncio.get_running_loop()
        with self._multiplexers_lock:
            multiplexer = self._multiplexers.get(loop)
            if multiplexer is None or multiplexer.closed:
                multiplexer = StreamMultiplexer(self.url, on_close=self._forget_multiplexer)
                self._multiplexers[loop] = multiplexer
        return multiplexer

    def _forget_multiplexer(self, multiplexer: StreamMultiplexer) -> None:
        """Its loop ended: drop it (it refers to the loop, which the mapping would keep)."""
        with self._multiplexers_lock:
            for loop, known in list(self._multiplexers.items()):
                if known is multiplexer:
                    del self._multiplexers[loop]

    def last_seq(self, run_id: str) -> int | None:
        head = _keys(run_id)[1]
        with _unavailable_as_error(self.url):
            seq = self.client.hget(head, "seq")
            if seq is None:
                return 0 if self.client.exists(head) else None
        return int(seq)

    def delete(self, run_id: str) -> None:
        with _unavailable_as_error(self.url):
            self.client.delete(*_keys(run_id))

    def close(self) -> None:
        self.client.close()


class RedisAsyncReader(AsyncReader):
    """Reads through its event loop's multiplexer: no connection of its own, however many
    readers wait (see redis_multiplexer.py)."""

    def __init__(self, transport: RedisStreamTransport):
        self.transport = transport

    async def read(self, run_id: str, after: int, *, block: float, count: int) -> list[Entry]:
        multiplexer = self.transport.multiplexer()
        with _unavailable_as_error(self.transport.url):
            return await multiplexer.read(_keys(run_id)[0], after, block=block, count=count)

    async def last_seq(self, run_id: str) -> int | None:
        client = self.transport.multiplexer().client
        head = _keys(run_id)[1]
        with _unavailable_as_error(self.transport.url):
            seq = await client.hget(head, "seq")
            if seq is None:
                return 0 if await client.exists(head) else None
        return int(seq)
