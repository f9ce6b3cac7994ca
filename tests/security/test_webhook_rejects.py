"""Contract of `WebhookEventStore`, run against the Postgres and the in-memory store alike:
event ids recorded once, refused bodies kept by hash with their reason and delivery count."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from meterline.postgres import open_pool
from meterline.stripe import (
    MemoryWebhookEventStore,
    PostgresWebhookEventStore,
    WebhookEventStore,
)

pytestmark = pytest.mark.integration


@pytest.fixture(params=["memory", "postgres"])
def store(request: pytest.FixtureRequest) -> Iterator[WebhookEventStore]:
    if request.param == "memory":
        yield MemoryWebhookEventStore()
        return
    conninfo = request.getfixturevalue("pg_conninfo")
    with open_pool(conninfo, max_size=2) as pool:
        yield PostgresWebhookEventStore(pool)


def test_an_event_is_processed_once(store: WebhookEventStore) -> None:
    assert store.record("evt_1", "invoice.paid", 1)
    assert store.record("evt_1", "invoice.paid", 1)  # not processed yet: retry it
    store.processed("evt_1")
    assert not store.record("evt_1", "invoice.paid", 1)


def test_refused_bodies_are_kept_by_hash_with_attempts(store: WebhookEventStore) -> None:
    big = b"[" + b" " * 100_000 + b"]"
    store.reject(b"[]", None, "the body is not a Stripe event")
    store.reject(big, "evt_2", "data.object: missing\x00")
    store.reject(b"[]", None, "the body is not a Stripe event (again)")
    kept = {r.size: r for r in store.rejected()}
    assert set(kept) == {2, len(big)}
    assert kept[2].attempts == 2 and kept[2].reason.endswith("(again)")
    assert kept[len(big)].attempts == 1 and kept[len(big)].event_id == "evt_2"
    assert len(kept[2].body_sha256) == 64
    assert store.rejected(limit=1)[0].size == 2
