"""Run streams in Redis: one Stream per run (XADD with a MAXLEN cap, XREAD BLOCK) and a small
hash beside it, the head: `seq` (the last number given), `owner` (the claim token allowed to
append) and `ended` (the final status).

Entry ids are `0-<seq>`: explicit and gap-free, so a reader resuming after n knows that the
next entry must be n + 1, and that anything else means events were trimmed. Both keys share a
hash tag, so a cluster keeps them on one node for the scripts. Appends and the end are Lua
scripts, registered once per client: the fence check and the write are one atomic step.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis
import redis.asyncio

from runqueue.errors import StreamUnavailableError, first_line
from runqueue.settings import redact_url
from runqueue.stream.transport import Appended, AppendOutcome, Entry, StreamTransport

KEY_PREFIX = "runqueue:stream:"

# KEYS: events, head. ARGV: mode ("open" | "append"), token, maxlen, then event, data pairs.
# Returns the last new entry's number; -1: the stream ended, -2: another token owns it,
# -3: no stream.
APPEND = """
if redis.call('HEXISTS', KEYS[2], 'ended') == 1 then return -1 end
if ARGV[1] == 'open' then
  redis.call('HSET', KEYS[2], 'owner', ARGV[2])
else
  local owner = redis.call('HGET', KEYS[2], 'owner')
  if not owner then return -3 end
  if owner ~= ARGV[2] then return -2 end
end
local seq = 0
for i = 4, #ARGV, 2 do
  seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '0-' .. seq, 'e', ARGV[i], 'd', ARGV[i + 1])
end
return seq
"""

# KEYS: events, head. ARGV: token, seq. Returns 1 if the head was recreated, 0 if it exists.
REOPEN = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[2], 'owner', ARGV[1], 'seq', ARGV[2])
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


def _entries(reply: Any) -> list[Entry]:
    """XREAD's reply ([[key, [(id, fields), ...]]]) as entries."""
    if not reply:
        return []
    ((_key, items),) = reply
    return [
        Entry(seq=int(entry_id.partition("-")[2]), event=fields["e"], data=fields["d"])
        for entry_id, fields in items
    ]


class RedisStreamTransport(StreamTransport):
    """Run streams in the Redis at `url` (by default the broker's)."""

    def __init__(self, url: str, *, retention_seconds: float, max_events: int):
        super().__init__(url, retention_seconds=retention_seconds, max_events=max_events)
        # Connections are made on first use; redis-py's pool starts afresh in a forked child.
        self.client = redis.Redis.from_url(url, decode_responses=True)
        self._append = self.client.register_script(APPEND)
        self._seal = self.client.register_script(SEAL)
        self._reopen = self.client.register_script(REOPEN)

    def _unavailable(self, exc: Exception) -> StreamUnavailableError:
        return StreamUnavailableError(
            f"run stream unavailable ({redact_url(self.url)}): {first_line(exc)}"
        )

    def _call_append(
        self, mode: str, run_id: str, token: str, entries: list[tuple[str, str]]
    ) -> Appended:
        args: list[object] = [mode, token, self.max_events]
        for event, data in entries:
            args += [event, data]
        try:
            seq = self._append(keys=_keys(run_id), args=args)
        except redis.ConnectionError as exc:
            raise self._unavailable(exc) from exc
        if seq > 0:
            return Appended(AppendOutcome.appended, seq)
        return Appended(REFUSALS[seq])

    def open(self, run_id: str, token: str, event: str, data: str) -> Appended:
        return self._call_append("open", run_id, token, [(event, data)])

    def append(self, run_id: str, token: str, entries: list[tuple[str, str]]) -> Appended:
        return self._call_append("append", run_id, token, entries)

    def reopen(self, run_id: str, token: str, after_seq: int) -> bool:
        try:
            return self._reopen(keys=_keys(run_id), args=[token, after_seq]) == 1
        except redis.ConnectionError as exc:
            raise self._unavailable(exc) from exc

    def seal(
        self, run_id: str, status: str, entries: list[tuple[str, str]], *, create: bool
    ) -> bool:
        args: list[Any] = [
            "1" if create else "0",
            max(1, int(self.retention_seconds * 1000)),
            self.max_events,
            status,
        ]
        for event, data in entries:
            args += [event, data]
        try:
            return self._seal(keys=_keys(run_id), args=args) == 1
        except redis.ConnectionError as exc:
            raise self._unavailable(exc) from exc

    def read(self, run_id: str, after: int, *, block: float, count: int) -> list[Entry]:
        events_key = _keys(run_id)[0]
        try:
            reply = self.client.xread(
                {events_key: f"0-{after}"},
                count=count,
                block=max(1, int(block * 1000)) if block > 0 else None,
            )
        except redis.ConnectionError as exc:
            raise self._unavailable(exc) from exc
        return _entries(reply)

    async def aread(self, run_id: str, after: int, *, block: float, count: int) -> list[Entry]:
        client = _async_client(self.url)
        events_key = _keys(run_id)[0]
        try:
            reply = await client.xread(
                {events_key: f"0-{after}"},
                count=count,
                block=max(1, int(block * 1000)) if block > 0 else None,
            )
        except redis.ConnectionError as exc:
            raise self._unavailable(exc) from exc
        return _entries(reply)

    def last_seq(self, run_id: str) -> int | None:
        try:
            seq = self.client.hget(_keys(run_id)[1], "seq")
            if seq is None:
                return 0 if self.client.exists(_keys(run_id)[1]) else None
        except redis.ConnectionError as exc:
            raise self._unavailable(exc) from exc
        return int(seq)

    def delete(self, run_id: str) -> None:
        try:
            self.client.delete(*_keys(run_id))
        except redis.ConnectionError as exc:
            raise self._unavailable(exc) from exc

    def close(self) -> None:
        self.client.close()


_async_clients: dict[tuple[int, str], tuple[asyncio.AbstractEventLoop, redis.asyncio.Redis]] = {}


def _async_client(url: str) -> redis.asyncio.Redis:
    """The asyncio client of the running event loop for `url`: one per loop (a client belongs
    to the loop it connected in), so every reader of a loop shares one connection pool.
    Clients of loops that have closed are dropped."""
    loop = asyncio.get_running_loop()
    for key, (owner, _client) in list(_async_clients.items()):
        if owner.is_closed():
            del _async_clients[key]
    key = (id(loop), url)
    entry = _async_clients.get(key)
    if entry is None or entry[0] is not loop:
        client = redis.asyncio.Redis.from_url(url, decode_responses=True)
        entry = _async_clients[key] = (loop, client)
    return entry[1]
