"""The scripts' digit arithmetic (`add`, `less` in `meterline.view.scripts`) against Python's
integers, in the real Redis Lua: carries across limbs, sums past 2^53 and 2^63."""

from __future__ import annotations

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterline.view.scripts import _COMMON

ARITHMETIC = _COMMON + "return {add(ARGV[1], ARGV[2]), less(ARGV[1], ARGV[2]) and 1 or 0}"
numbers = (
    st.integers(0, 10**30)
    | st.integers(0, 10**16)
    | st.sampled_from([0, 1, 9_999_999, 10**7, 2**53, 2**53 + 1, 2**63 - 1, 2**63, 10**22 + 3])
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(a=numbers, b=numbers)
def test_add_and_less_are_exact_at_any_size(redis_url: str, a: int, b: int) -> None:
    client = redis.Redis.from_url(redis_url)
    total, smaller = client.eval(ARITHMETIC, 0, str(a), str(b))
    assert (int(total), bool(smaller)) == (a + b, a < b)
    client.close()
