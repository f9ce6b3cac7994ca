"""`CustomerCache`: TTL with jitter, invalidation, and loads that race an invalidation."""

from __future__ import annotations

import pytest

from meterline.entitlements import CustomerCache


class Ticker:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_entries_live_between_ttl_less_jitter_and_ttl() -> None:
    clock = Ticker()
    shortest = CustomerCache[str](10.0, clock=clock, jitter=0.2, rng=lambda: 0.999999)
    longest = CustomerCache[str](10.0, clock=clock, jitter=0.2, rng=lambda: 0.0)
    for cache in (shortest, longest):
        cache.put(1, "c", "k", "v")
    clock.now += 7.99
    found = shortest.lookup(1, "c", "k")
    assert found is not None and found[0] == "v" and found[1] == pytest.approx(0.01, abs=1e-4)
    clock.now += 0.02
    assert shortest.get(1, "c", "k") is None
    assert longest.get(1, "c", "k") == "v"
    clock.now += 2.0
    assert longest.get(1, "c", "k") is None


def test_jitter_spreads_expiry_of_entries_made_together() -> None:
    clock = Ticker()
    cache = CustomerCache[int](1.0, clock=clock, jitter=0.2)
    for n in range(1000):
        cache.put(1, f"c{n}", "k", n)
    lefts = [cache.lookup(1, f"c{n}", "k")[1] for n in range(1000)]  # type: ignore[index]
    assert 0.8 <= min(lefts) < 0.82 and 0.98 < max(lefts) <= 1.0


def test_jitter_must_be_a_fraction() -> None:
    with pytest.raises(ValueError, match="jitter"):
        CustomerCache[int](1.0, jitter=1.0)


def test_a_load_that_raced_an_invalidation_is_returned_but_not_kept() -> None:
    cache = CustomerCache[str](60.0)

    def stale() -> str:
        cache.invalidate(1, "c")  # a consume or a webhook lands while the load reads
        return "read before the change"

    assert cache.load(1, "c", "k", stale) == "read before the change"
    assert cache.get(1, "c", "k") is None
    assert cache.get_or_load(1, "c", "k", lambda: "fresh") == "fresh"
    assert cache.get(1, "c", "k") == "fresh"


def test_load_replaces_a_live_entry_and_invalidate_drops_one_customer_or_a_tenant() -> None:
    cache = CustomerCache[str](60.0)
    cache.put(1, "c", "k", "old")
    cache.put(1, "d", "k", "d")
    cache.put(2, "c", "k", "other tenant")
    assert cache.load(1, "c", "k", lambda: "new") == "new"
    assert cache.get(1, "c", "k") == "new"
    cache.invalidate(1, "c")
    assert (cache.get(1, "c", "k"), cache.get(1, "d", "k")) == (None, "d")
    cache.invalidate(1)
    assert (cache.get(1, "d", "k"), cache.get(2, "c", "k")) == (None, "other tenant")


def test_a_zero_ttl_caches_nothing() -> None:
    cache = CustomerCache[str](0.0)
    assert cache.get_or_load(1, "c", "k", lambda: "v") == "v"
    assert cache.get(1, "c", "k") is None
