"""Token buckets in Redis, one per tenant, shared by every process that limits the tenant's rate.

One Lua call takes tokens (`lease`). The bucket holds up to one second of the rate; a take may
pass into debt while the bucket is positive (a 1,000-event batch on a slow tenant), and while it
is in debt nothing is taken and the caller is told how long to wait, so the long-run rate never
exceeds the configured one. Time is Redis's own (`TIME`), so replicas with skewed clocks share
one bucket correctly. The bucket's key carries the tenant as its hash tag (Redis Cluster) and
expires after a minute unused, or once its debt is repaid if that is later (a full bucket is
what a missing key means, so a bucket in debt must outlive its debt).
Works on Redis 6.2 (a script, not a function; effects replication makes `TIME` safe).
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio

_LEASE = """
local rate, want = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(b[1]) or rate, tonumber(b[2]) or now
if now > at then
  tokens = math.min(rate, tokens + (now - at) * rate / 1000)
  at = now
end
if tokens <= 0 then
  return tostring((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - want), 'at', tostring(at))
local repaid_ms = math.ceil((1 - (tokens - want)) * 1000 / rate)
redis.call('PEXPIRE', KEYS[1], math.max(60000, repaid_ms + 1000))
return '0'
"""


class BucketStoreDown(RuntimeError):
    """Redis did not answer; nothing was taken."""


class RedisBucketStore:
    """Tenants' token buckets in Redis (see the module docstring)."""

    def __init__(self, client: redis.asyncio.Redis, prefix: str = "ml") -> None:
        self._prefix = prefix
        self._lease: Any = client.register_script(_LEASE)

    async def lease(self, tenant_id: int, rate: float, want: int) -> float:
        """Take `want` tokens from the tenant's bucket and return 0, or return the seconds to
        wait (nothing taken). Raises `BucketStoreDown` when Redis does not answer."""
        key = f"{self._prefix}:rl:{{{tenant_id}}}"
        try:
            answer = await self._lease(keys=[key], args=[repr(float(rate)), want])
        except redis.RedisError as exc:
            raise BucketStoreDown(str(exc)) from exc
        return float(answer)
