"""Bad input to the reporter answers a 4xx naming the field; CSV exports are neutralised.

Probes of issue 21 (items 6, 7 and 10) against the reporter app on real Postgres and the
Stripe emulator.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from meterline.errors import ValidationFailed
from meterline.tenants import PostgresTenantRepository
from reporter.alerts import Discrepancy
from reporter.api import create_app
from tests.reporter.support import emulator_clock, make_world, reporter_for

pytestmark = pytest.mark.integration

HOSTILE = ['=HYPERLINK("http://evil.example","x")', "@SUM(1+1)", "+1+2", "-2+3", "\tx", "\rx"]


@pytest.fixture
def finance(pg_conninfo: str, stripe_emulator: Any, stripe_client: Any) -> Iterator[Any]:
    world = make_world(pg_conninfo, stripe_client, n_customers=0)
    reporter = reporter_for(world, stripe_client, emulator_clock(stripe_emulator.control))
    hour = datetime(2026, 11, 2, 10, tzinfo=UTC)
    found = [_discrepancy(customer, hour) for customer in HOSTILE]
    ids, _ = reporter.store.record(world.tenant_id, None, found)
    repo = PostgresTenantRepository(world.pool)
    keys = {s: repo.create_key("acme", [s])[1] for s in ("read", "admin", "ingest")}
    with TestClient(create_app(reporter)) as client:
        yield client, keys, ids


def _discrepancy(customer: str, hour: datetime) -> Discrepancy:
    return Discrepancy(
        "missing_in_stripe", customer, "api_calls", hour, hour + timedelta(hours=1),
        Decimal(30), Decimal(30), Decimal(0), Decimal(-30), Decimal("0.5"), "usd",
    )  # fmt: skip


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_refused(answer: httpx.Response, field: str) -> None:
    assert answer.status_code == 422, (answer.status_code, answer.text)
    assert field in {e["field"] for e in answer.json()["errors"]}, answer.text


@pytest.mark.parametrize("path", ["/v1/reconciliation/alerts.csv", "/v1/reconciliation/alerts"])
def test_csv_cells_that_start_a_formula_are_neutralised(finance: Any, path: str) -> None:
    client, keys, ids = finance
    note = "=cmd|' /C calc'!A0"
    client.post(
        f"/v1/reconciliation/alerts/{ids[0]}/acknowledge",
        json={"note": note},
        headers=_auth(keys["admin"]),
    ).raise_for_status()
    answer = client.get(path, params={"format": "csv"}, headers=_auth(keys["read"]))
    assert answer.status_code == 200, answer.text
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert sorted(r["customer"] for r in rows) == sorted("'" + c for c in HOSTILE)
    assert [r["note"] for r in rows if r["note"]] == ["'" + note]
    assert {r["difference"] for r in rows} == {"-30.0"}
    assert all("\"'" + c.replace('"', '""') + '"' in answer.text for c in HOSTILE)


def test_a_nul_in_a_note_is_refused(finance: Any) -> None:
    client, keys, ids = finance
    answer = client.post(
        f"/v1/reconciliation/alerts/{ids[0]}/resolve",
        json={"note": "done\x00"},
        headers=_auth(keys["admin"]),
    )
    assert_refused(answer, "note")


def test_the_store_refuses_a_nul_in_a_note_whatever_the_caller(finance: Any) -> None:
    client, _, ids = finance
    store = client.app.state.reporter.store
    tenant_id = store.alert(finance_tenant(client), ids[0]).tenant_id
    with pytest.raises(ValidationFailed) as refused:
        store.transition(tenant_id, ids[0], "acknowledged", "seen\x00")
    assert refused.value.errors[0].field == "note"
    assert store.transition(tenant_id, ids[0], "acknowledged", "seen\tby\r\nme").note


def finance_tenant(client: TestClient) -> int:
    with client.app.state.reporter.pool.connection() as conn:
        return int(conn.execute("SELECT id FROM tenants WHERE name = 'acme'").fetchone()[0])


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01"])
def test_a_reconciliation_day_out_of_range_is_refused(finance: Any, day: str) -> None:
    client, keys, _ = finance
    answer = client.post(
        "/v1/reconciliation/runs", json={"date": day}, headers=_auth(keys["admin"])
    )
    assert_refused(answer, "date")


@pytest.mark.parametrize("until", ["0001-01-01T00:00:00Z", "0001-01-01T00:30:00+01:00"])
def test_a_flush_time_out_of_range_is_refused(finance: Any, until: str) -> None:
    client, keys, _ = finance
    answer = client.post(
        "/v1/reports/run", json={"flush_until": until}, headers=_auth(keys["admin"])
    )
    assert_refused(answer, "flush_until")


def test_trailing_slash_redirects_do_not_reflect_the_host(finance: Any) -> None:
    client, keys, _ = finance
    answer = client.get(
        "/v1/reconciliation/runs/",
        headers={"host": "evil.example", **_auth(keys["read"])},
        follow_redirects=False,
    )
    assert "evil.example" not in answer.headers.get("location", "")


def test_a_key_without_read_is_told_the_scope_reads_need(finance: Any) -> None:
    client, keys, _ = finance
    answer = client.get("/v1/reconciliation/alerts", headers=_auth(keys["ingest"]))
    assert answer.status_code == 403
    message = answer.json()["message"]
    assert "'read'" in message and "lacks the 'admin'" not in message
