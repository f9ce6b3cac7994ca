"""Token-bucket arithmetic, the one definition: refill a bucket, then take from it.

A bucket refills at `rate` tokens a second up to `capacity`. `take` either takes `want` tokens
(wait 0) or takes nothing and says how many seconds until a token is back. With `debt`, a take
succeeds while any token is left and may leave the bucket negative (ingest: a 1,000-event batch
on a slow tenant is accepted, and the tenant then waits its debt out, so the long-run rate
holds); without, it needs all `want` tokens (the Stripe client: one call, one token).

Pure functions over floats, so each user keeps its own state, clock and locking: the Stripe
client's `TokenBucket` (one bucket, blocking, thread-safe), ingest's `MemoryBucketStore` (one
bucket per tenant, on the event loop). The Redis script in `meterline.redis.buckets` is the same
arithmetic in Lua; the ingest contract suite runs both stores through the same cases.
"""

from __future__ import annotations


def refill(
    tokens: float, at: float, now: float, rate: float, capacity: float
) -> tuple[float, float]:
    """(tokens, at) at `now`: what accrued since `at`, up to `capacity`. A clock that went
    back (`now` before `at`) adds nothing."""
    if now <= at:
        return tokens, at
    return min(capacity, tokens + (now - at) * rate), now


def take(tokens: float, want: float, rate: float, *, debt: bool = False) -> tuple[float, float]:
    """(tokens left, 0.0) when `want` may be taken, else (tokens, seconds to wait) with nothing
    taken: until one token is back with `debt`, until `want` are without."""
    if tokens >= want or (debt and tokens > 0):
        return tokens - want, 0.0
    need = 1.0 if debt else want
    return tokens, (need - tokens) / rate
