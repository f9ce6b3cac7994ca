"""Dedupe ids in Redis: one Lua (EVALSHA) round trip per call, which marks ids, checks ids,
or both (`exchange`: marks first).

Ids live in sets, one per tenant and time bucket: `<prefix>:ddb:{<tenant>}:<bucket>`, where a
bucket is an eighth of the window (`BUCKETS` - 1 buckets span it) and is numbered from Redis's
own clock (`TIME`), so every ingest replica files an id in the same bucket. A mark adds the
ids to the current bucket with one SADD; a check asks the `BUCKETS` most recent buckets with
one SMISMEMBER each. So an id is remembered for at least the window and at most one bucket
longer. Why sets rather than one key per id with its own expiry: Redis spent ~2.2 µs per SET
with PX and ~1.3 µs per EXISTS inside the script (measured on the bench machine, 700 marks and
700 checks per call), against ~0.65-1.3 µs per id for SADD and SMISMEMBER; the merged dedupe
calls are served one at a time, so Redis's time per id bounded ingest's batched rate.

A bucket's key expires one window plus one bucket after its last mark (as late as a check can
still read it), and each mark UNLINKs the bucket that has just left the window, which frees a
large set in Redis's background thread; the expiry is the backstop for a tenant that went
quiet (set `lazyfree-lazy-expire yes` so that a large one is freed in the background too).

The hash tag is the tenant, so one tenant's buckets share a Redis Cluster slot and a script
may touch them all; the script's only declared key is the tenant's key prefix, which carries
the hash tag, so the call is routed to the right slot. Works on Redis 6.2 (SMISMEMBER is 6.2's;
scripts, not functions). A call sends each list of ids as one newline-joined argument (with
its count), and answers with one string of '0'/'1' flags for the checked ids: packing and
parsing one argument instead of one per id is what makes a call cheap for the client
(redis-py spends ~1 µs per argument). redis-py calls it by SHA and sends it whole after
NOSCRIPT.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import redis.asyncio

from meterline.dedupe.base import Deduper

SEPARATOR = "\n"
BUCKETS = 9
"""Buckets a check reads: the current one and the eight that span the window before it."""

# The check's Lua, shared by `_EXCHANGE` and the scripts of other stores that ask whether an
# id is held within their own atomic step (`guard_lua`): `dedupe_now` reads Redis's clock and
# keeps the tenant's `intact` key (see `RedisDeduper`), returning the current bucket and the
# flag of a miss; `dedupe_seen` returns the set of the positions of `checks` held in a bucket;
# `dedupe_held` is whether one id is held (a '1' of `seen`, the same buckets), with neither
# EXISTS nor the `intact` key: a miss is "not held" whether it is '0' or '2', and the next mark
# or check keeps `intact` (the time it records is then later: it turns `all` later, never early).
CHECK_LUA = """
local function dedupe_ms()
  local time = redis.call('TIME')
  return time[1] * 1000 + math.floor(time[2] / 1000)
end
local function dedupe_held(head, width, count, id)
  local now = math.floor(dedupe_ms() / width)
  for bucket = now - count + 1, now do
    if redis.call('SISMEMBER', head .. bucket, id) == 1 then return true end
  end
  return false
end
local function dedupe_now(head, width, count)
  local now_ms = dedupe_ms()
  local intact = redis.call('GET', head .. 'intact')
  if not intact then
    intact = string.format('%d', now_ms)
    redis.call('SET', head .. 'intact', intact)
  end
  if intact ~= 'all' and now_ms - tonumber(intact) >= width * (count - 1) then
    intact = 'all'
    redis.call('SET', head .. 'intact', intact)
  end
  return math.floor(now_ms / width), intact == 'all' and '0' or '2'
end
local function dedupe_chunked(ids, fn)
  for i = 1, #ids, 4000 do fn(i - 1, unpack(ids, i, math.min(i + 3999, #ids))) end
end
local function dedupe_seen(head, now, count, checks)
  local seen = {}
  for bucket = now - count + 1, now do
    local key = head .. bucket
    if #checks > 0 and redis.call('EXISTS', key) == 1 then
      dedupe_chunked(checks, function(at, ...)
        local flags = redis.call('SMISMEMBER', key, ...)
        for i = 1, #flags do
          if flags[i] == 1 then seen[at + i] = true end
        end
      end)
    end
  end
  return seen
end
"""

# KEYS[1]: the tenant's key prefix. ARGV: the number of ids to mark, those ids joined by "\n",
# the bucket width (ms), the number of buckets to check, the number of ids to check, those ids
# joined by "\n". Marks, then returns one flag per checked id: '1' seen, '0' not seen, '2' not
# seen by a store that may have lost it (its `intact` key: see `RedisDeduper`). unpack() takes
# at most a few thousand values, hence the chunks.
_EXCHANGE = (
    CHECK_LUA
    + """
local head = KEYS[1]
local function split(count, packed)
  local ids, at = {}, 1
  for i = 1, tonumber(count) do
    local stop = string.find(packed, '\\n', at, true)
    ids[i] = string.sub(packed, at, (stop or 0) - 1)
    if stop then at = stop + 1 end
  end
  return ids
end
local width, count = tonumber(ARGV[3]), tonumber(ARGV[4])
local now, miss = dedupe_now(head, width, count)
local marks = split(ARGV[1], ARGV[2])
if #marks > 0 then
  local key = head .. now
  dedupe_chunked(marks, function(_, ...) redis.call('SADD', key, ...) end)
  redis.call('PEXPIRE', key, width * count)
  redis.call('UNLINK', head .. (now - count))
end
local checks = split(ARGV[5], ARGV[6])
local seen = dedupe_seen(head, now, count, checks)
local out = {}
for i = 1, #checks do out[i] = seen[i] and '1' or miss end
return table.concat(out)
"""
)

# KEYS[1]: the tenant's `intact` key. ARGV[1]: the value read before a restore began.
_DECLARE_INTACT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], 'all')
return 1
"""


class RedisDeduper(Deduper):
    """`client` comes from `meterline.redis.connect_async`.

    Loss: Redis may be flushed or restarted empty, and ids marked before are then forgotten.
    Each tenant has an `intact` key, `<prefix>:ddb:{<tenant>}:intact`: `all` when the store holds
    every id marked within the window, else the Redis time (ms) from which it remembers. A call
    that finds it missing (a loss, or a tenant's first call) writes that time; once a window
    has passed since, or once `declare_intact` confirms a restore, it is `all` again. Until
    then a check answers `None` rather than False for an id it does not hold: callers for
    whom a forgotten id matters ask the durable record (`meterline.dedupe.durable`).

    Ids must not contain a newline (ingest's never hold control characters); a call with one
    raises ValueError, which callers treat like any store failure (every id unseen).
    """

    def __init__(self, client: redis.asyncio.Redis, prefix: str = "ml", window_s: float = 3600.0):
        self.window_s = window_s
        self._client = client
        self._prefix = prefix
        self._exchange: Any = client.register_script(_EXCHANGE)
        self._declare: Any = client.register_script(_DECLARE_INTACT)
        self._width_ms = max(1, math.ceil(window_s * 1000 / (BUCKETS - 1)))

    def _head(self, tenant_id: int) -> bytes:
        return _head(self._prefix, tenant_id)

    async def seen(self, tenant_id: int, ids: Sequence[str]) -> list[bool | None]:
        return await self.exchange(tenant_id, (), ids) if ids else []

    async def mark(self, tenant_id: int, ids: Sequence[str]) -> None:
        if ids:
            await self.exchange(tenant_id, ids, ())

    async def exchange(
        self, tenant_id: int, mark_ids: Sequence[str], seen_ids: Sequence[str]
    ) -> list[bool | None]:
        args = _arguments(mark_ids, seen_ids, self._width_ms)
        flags = await self._exchange(keys=[self._head(tenant_id)], args=args)
        return _flags(flags, len(seen_ids))

    async def intact_since(self, tenant_id: int) -> str | None:
        """`None` when the store holds every id of the tenant marked within the window, else
        the value to give `declare_intact` once the ids it may have lost are marked again."""
        raw = await self._client.get(self._head(tenant_id) + b"intact")
        text = raw.decode() if isinstance(raw, bytes) else raw
        return None if text == "all" else (text or "")

    async def declare_intact(self, tenant_id: int, since: str) -> bool:
        """Record that the ids lost before `since` (from `intact_since`) are marked again;
        False (nothing written) when the store was emptied again meanwhile."""
        key = self._head(tenant_id) + b"intact"
        return bool(await self._declare(keys=[key], args=[since]))

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except redis.RedisError:
            return False

    async def close(self) -> None:
        await self._client.aclose()


class BlockingRedisDeduper:
    """`RedisDeduper`'s `seen` and `mark` for threads, on a blocking client (`meterline.redis.
    connect`): the same script, keys and answers, with no event loop to hop to. Consume, which
    runs in threads, calls it once per request; its loss and `intact` rules are RedisDeduper's."""

    def __init__(self, client: redis.Redis, prefix: str = "ml", window_s: float = 3600.0):
        self._prefix = prefix
        self._width_ms = max(1, math.ceil(window_s * 1000 / (BUCKETS - 1)))
        self._exchange: Any = client.register_script(_EXCHANGE)

    def seen(self, tenant_id: int, ids: Sequence[str]) -> list[bool | None]:
        return self.exchange(tenant_id, (), ids) if ids else []

    def mark(self, tenant_id: int, ids: Sequence[str]) -> None:
        if ids:
            self.exchange(tenant_id, ids, ())

    def exchange(
        self, tenant_id: int, mark_ids: Sequence[str], seen_ids: Sequence[str]
    ) -> list[bool | None]:
        args = _arguments(mark_ids, seen_ids, self._width_ms)
        flags = self._exchange(keys=[_head(self._prefix, tenant_id)], args=args)
        return _flags(flags, len(seen_ids))

    def head(self, tenant_id: int) -> str:
        """The tenant's key prefix: the key a script that asks `guard_lua` declares."""
        return _head(self._prefix, tenant_id).decode()

    def guard_lua(self) -> str:
        """Lua defining `guard_held(head, id)`: true iff the id is seen (a '1' of `seen`), the
        same check as `seen` run inside another script's atomic step (a `RedisUsageView`
        reservation: `meterline.view.IdGuard`)."""
        return CHECK_LUA + (
            "local function guard_held(head, id)\n"
            f"  return dedupe_held(head, {self._width_ms}, {BUCKETS}, id)\n"
            "end\n"
        )


def _head(prefix: str, tenant_id: int) -> bytes:
    return f"{prefix}:ddb:{{{tenant_id}}}:".encode()


def _arguments(mark_ids: Sequence[str], seen_ids: Sequence[str], width_ms: int) -> list[Any]:
    marks, checks = _packed(mark_ids), _packed(seen_ids)
    return [len(mark_ids), marks, width_ms, BUCKETS, len(seen_ids), checks]


def _flags(flags: object, expected: int) -> list[bool | None]:
    if isinstance(flags, str):  # a client made with decode_responses
        flags = flags.encode()
    if not isinstance(flags, bytes) or len(flags) != expected:
        raise redis.ResponseError(f"unexpected answer to the dedupe script: {flags!r:.80}")
    return [_FLAGS[flag] for flag in flags]


_FLAGS: dict[int, bool | None] = {49: True, 48: False, 50: None}  # b"1", b"0", b"2"


def _packed(ids: Sequence[str]) -> bytes:
    """The ids as one argument; ValueError if one holds the separator (it would split)."""
    if not ids:
        return b""
    joined = SEPARATOR.join(ids)
    if joined.count(SEPARATOR) != len(ids) - 1:
        raise ValueError("dedupe ids must not contain a newline")
    return joined.encode()
