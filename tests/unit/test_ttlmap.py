"""TtlMap: expiry, a per-entry TTL, max entries, jitter, the injected clock."""

from __future__ import annotations

import pytest

from meterline.ttlmap import TtlMap


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_value_lives_until_its_ttl_then_is_gone() -> None:
    clock = Clock()
    cache: TtlMap[str, int] = TtlMap(10.0, clock=clock)
    cache.put("a", 1)
    clock.now = 109.9
    assert cache.get("a") == 1
    assert cache.entries["a"] == (110.0, 1)  # what the hot paths read: (expires, value)
    clock.now = 110.0
    assert cache.get("a") is None


def test_a_ttl_of_the_callers_own_and_an_explicit_now() -> None:
    clock = Clock()
    cache: TtlMap[str, int | None] = TtlMap(10.0, clock=clock)
    cache.put("refused", None, ttl=2.0, now=50.0)
    assert cache.entries["refused"] == (52.0, None)


def test_a_full_map_is_emptied_before_a_new_key_but_not_for_a_present_one() -> None:
    cache: TtlMap[int, int] = TtlMap(10.0, max_entries=2, clock=Clock())
    cache.put(1, 1)
    cache.put(2, 2)
    cache.put(2, 3)
    assert len(cache) == 2
    cache.put(3, 3)
    assert dict(cache.entries) == {3: (110.0, 3)}


def test_jitter_shortens_the_ttl_by_at_most_its_share() -> None:
    draws = iter([0.0, 1.0, 0.5])
    cache: TtlMap[int, int] = TtlMap(10.0, clock=Clock(), jitter=0.2, rng=lambda: next(draws))
    for key in range(3):
        cache.put(key, key)
    assert [cache.entries[k][0] for k in range(3)] == pytest.approx([110.0, 108.0, 109.0])


def test_pop_and_clear() -> None:
    cache: TtlMap[int, int] = TtlMap(10.0, clock=Clock())
    cache.put(1, 1)
    cache.put(2, 2)
    cache.pop(1)
    cache.pop(9)
    assert cache.get(1) is None and cache.get(2) == 2
    entries = cache.entries
    cache.clear()
    assert len(cache) == 0 and cache.entries is entries  # callers may hold the dict


@pytest.mark.parametrize("jitter", [-0.1, 1.0])
def test_jitter_outside_zero_to_one_is_refused(jitter: float) -> None:
    with pytest.raises(ValueError, match="jitter"):
        TtlMap(1.0, jitter=jitter)
