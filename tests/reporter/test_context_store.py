"""`PostgresContextStore.record` and `history`: what is recorded reads back the same, contexts of
several plans in one call each keep their own meters, and an existing (customer, since) stays."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from meterline.catalog.model import Aggregation
from meterline.postgres import open_pool
from reporter.contexts import Context
from reporter.postgres.contexts import PostgresContextStore
from reporter.scope import BilledMeter

T0 = datetime(2026, 11, 1, tzinfo=UTC)
LATER = datetime(2026, 11, 5, 10, 7, tzinfo=UTC)


def _meters(price: str, *keys: str) -> dict[str, BilledMeter]:
    return {
        k: BilledMeter(k, Aggregation.SUM, f"ev_{k}", f"mtr_{k}", Decimal(price), "usd")
        for k in keys
    }


def test_recorded_contexts_read_back_with_their_own_meters(pg_conninfo: str) -> None:
    basic, power = _meters("0.5", "api_calls"), _meters("0.05", "api_calls", "tokens")
    contexts = [
        Context(f"c{i}", T0, "power" if i % 3 else "basic", f"cus_{i}", f"sub_{i}" if i else None,
                power if i % 3 else basic)
        for i in range(7)
    ] + [Context("c1", LATER, None, "cus_1", None, {})]  # fmt: skip
    with open_pool(pg_conninfo, max_size=2) as pool:
        with pool.connection() as conn:
            tenant = conn.execute(
                "INSERT INTO tenants (name) VALUES ('ctx-store') RETURNING id"
            ).fetchone()
        assert tenant is not None
        store = PostgresContextStore(pool)
        store.record(tenant[0], [("c1", T0)], contexts)
        changed = Context("c2", T0, "basic", "cus_other", None, basic)
        store.record(tenant[0], [], [changed])  # (c2, T0) exists: it stays
        history = store.history(tenant[0])
        boundaries = store.boundaries(tenant[0])
    read = sorted(
        (c for cs in history.contexts.values() for c in cs), key=lambda c: (c.customer, c.since)
    )
    assert read == sorted(contexts, key=lambda c: (c.customer, c.since))
    assert boundaries == {"c1": [T0]}
