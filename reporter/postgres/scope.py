"""What the reporter reads in Postgres to know what is billed: the tenants, and each tenant's
Stripe meters (`stripe_objects`, kind 'meter', written by the catalog sync)."""

from __future__ import annotations

from meterline.postgres import Connection, Pool


def tenant_ids(pool: Pool) -> list[int]:
    with pool.connection() as conn:
        return [r[0] for r in conn.execute("SELECT id FROM tenants ORDER BY id").fetchall()]


def stripe_meters(conn: Connection, tenant_id: int) -> dict[str, tuple[str, str]]:
    """Per meter key: (Stripe meter id, event name), for meters synced to Stripe."""
    rows = conn.execute(
        "SELECT key, stripe_id, event_name FROM stripe_objects "
        "WHERE tenant_id = %s AND kind = 'meter' AND event_name IS NOT NULL",
        (tenant_id,),
    ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}
