"""The revenue API over real Postgres: the hand-worked 14 months of test_revenue.py kept as
revenue events with the metered part of its closed invoices, read back as JSON and CSV; bad
input named; scopes enforced."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from meterline.revenue import SubscriptionState
from meterline.revenue.postgres import PostgresRevenueEventStore
from meterline.tenants import PostgresTenantRepository
from reporter.api import create_app
from reporter.revenue_schemas import MovementsOut, MrrOut, RetentionOut
from tests.reporter.support import emulator_clock, make_world, reporter_for
from tests.reporter.test_revenue import HISTORY, INVOICES, MORE_INVOICES

pytestmark = pytest.mark.integration
Finance = tuple[TestClient, dict[str, str], PostgresRevenueEventStore, int]


@pytest.fixture
def finance(pg_conninfo: str, stripe_emulator: Any, stripe_client: Any) -> Iterator[Finance]:
    world = make_world(pg_conninfo, stripe_client, n_customers=1)
    reporter = reporter_for(world, stripe_client, emulator_clock(stripe_emulator.control))
    store = PostgresRevenueEventStore(world.pool)
    for n, state in enumerate(HISTORY):
        assert store.add(world.tenant_id, f"evt_{n}", state)
    for invoice in INVOICES + MORE_INVOICES:
        assert store.add_invoice(world.tenant_id, invoice)
    repo = PostgresTenantRepository(world.pool)
    keys = {scope: repo.create_key("acme", [scope])[1] for scope in ("read", "ingest")}
    with TestClient(create_app(reporter)) as client:
        yield client, keys, store, world.tenant_id


def get(finance: Finance, path: str, scope: str = "read") -> Any:
    client, keys = finance[:2]
    return client.get(path, headers={"Authorization": f"Bearer {keys[scope]}"})


def test_mrr_per_month_with_arr(finance: Finance) -> None:
    answer = get(finance, "/v1/revenue/mrr?from=2025-11&to=2026-12")
    assert answer.status_code == 200, answer.text
    rows = {r["month"]: r for r in answer.json()["data"]}
    assert len(rows) == 14
    assert rows["2026-10"] | {} == {
        "month": "2026-10", "currency": "usd", "start_mrr": 10900, "new": 0,
        "expansion": 8900, "contraction": 0, "churn": 0, "reactivation": 4900,
        "end_mrr": 24700, "arr": 24700 * 12, "metered": 0,
    }  # fmt: skip
    assert rows["2026-12"]["end_mrr"] == 16300 and rows["2026-12"]["arr"] == 195600


def test_metered_revenue_beside_mrr_never_in_it(finance: Finance) -> None:
    rows = get(finance, "/v1/revenue/mrr?from=2025-11&to=2026-12").json()["data"]
    metered = {r["month"]: r["metered"] for r in rows if r["metered"]}
    # G: 1,234 and 2,000 units x 5; March: 700 voided (0) + 300 open; April: 55 uncollectible.
    assert metered == {"2025-12": 6170, "2026-01": 10000, "2026-03": 300, "2026-04": 55}
    by_month = {r["month"]: r for r in rows}
    assert by_month["2025-12"]["end_mrr"] == 7100 and by_month["2025-12"]["new"] == 4900 + 1300
    assert by_month["2026-01"]["arr"] == 10367 * 12  # ARR is MRR x 12: no metered in it
    text = get(finance, "/v1/revenue/mrr?from=2025-12&to=2026-01&format=csv").text
    csv_rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["month"], r["end_mrr"], r["metered"]) for r in csv_rows] == [
        ("2025-12", "7100", "6170"),
        ("2026-01", "10367", "10000"),
    ]


def test_a_currency_billed_only_metered_usage_gets_rows_of_no_mrr(finance: Finance) -> None:
    _, _, store, tenant = finance
    euro = replace(INVOICES[1], invoice="in_eur", currency="eur", amount=250)
    assert store.add_invoice(tenant, euro)
    rows = get(finance, "/v1/revenue/mrr?from=2025-11&to=2025-12").json()["data"]
    assert [(r["currency"], r["month"], r["end_mrr"], r["metered"]) for r in rows] == [
        ("eur", "2025-11", 0, 0),
        ("eur", "2025-12", 0, 250),
        ("usd", "2025-11", 900, 0),
        ("usd", "2025-12", 7100, 6170),
    ]


def test_movements_name_their_customers(finance: Finance) -> None:
    body = get(finance, "/v1/revenue/movements?month=2026-12").json()
    assert [(m["customer"], m["kind"], m["amount"]) for m in body["data"]] == [
        ("E", "churn", 1300),
        ("D", "contraction", 8000),
    ]
    assert body["totals"] == [
        {"currency": "usd", "kind": "contraction", "amount": 8000, "customers": ["D"]},
        {"currency": "usd", "kind": "churn", "amount": 1300, "customers": ["E"]},
    ]


def test_retention_and_cohorts(finance: Finance) -> None:
    body = get(finance, "/v1/revenue/retention?month=2026-12").json()
    (usd,) = body["retention"]
    assert (usd["starting_mrr"], usd["ending_mrr"], usd["churn"]) == (7100, 9800, 2200)
    assert (usd["nrr"], usd["grr"]) == ("1.380282", "0.690141")  # 9800/7100, 4900/7100
    cohort = next(c for c in body["cohorts"] if c["cohort"] == "2026-01")
    assert cohort["mrr"] == [3267] * 5 + [0] * 4 + [4900] * 3
    assert cohort["months"][0] == "2026-01" and len(cohort["months"]) == 12


def test_csv_exports_neutralise_formulas(finance: Finance) -> None:
    answer = get(finance, "/v1/revenue/movements?month=2024-11&format=csv")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows[0][:4] == ["at", "customer", "currency", "kind"]
    assert len(rows) == 1  # no movement that month
    mrr = list(
        csv.DictReader(
            io.StringIO(get(finance, "/v1/revenue/mrr?from=2026-12&to=2026-12&format=csv").text)
        )
    )
    assert [(r["month"], r["end_mrr"], r["arr"]) for r in mrr] == [("2026-12", "16300", "195600")]
    retention = get(finance, "/v1/revenue/retention?month=2026-12&format=csv").text
    assert '"retention","usd","2026-12",7100,9800,0,2200,"1.380282","0.690141"' in retention


def test_a_customer_id_that_looks_like_a_formula_is_neutralised(finance: Finance) -> None:
    _, _, store, tenant = finance
    paid = HISTORY[0]
    at = paid.at.replace(year=2024)
    evil = SubscriptionState(at, "=HYPERLINK(1)", "x1", "active", "eur", paid.items)
    assert store.add(tenant, "evt_evil", evil)
    text = get(finance, "/v1/revenue/movements?month=2024-11&format=csv").text
    (row,) = list(csv.DictReader(io.StringIO(text)))
    assert (row["customer"], row["kind"], row["amount"]) == ("'=HYPERLINK(1)", "new", "900")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("/v1/revenue/mrr?from=2026-13", "from"),
        ("/v1/revenue/mrr?from=2026-05&to=2026-01", "from"),
        ("/v1/revenue/mrr?from=2000-01&to=2026-01", "to"),
        ("/v1/revenue/mrr?to=26-01", "to"),
        ("/v1/revenue/movements?month=2026-1", "month"),
        ("/v1/revenue/retention?month=abcdefghij", "month"),
        ("/v1/revenue/retention?month=2026-01&format=xml", "format"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(finance: Finance, query: str, field: str) -> None:
    answer = get(finance, query)
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["field"] == field


def test_a_read_scope_is_needed(finance: Finance) -> None:
    assert finance[0].get("/v1/revenue/mrr").status_code == 401
    assert get(finance, "/v1/revenue/mrr", "ingest").status_code == 403
    assert get(finance, "/v1/revenue/mrr").status_code == 200


def test_answers_match_their_documented_schemas(finance: Finance) -> None:
    MrrOut.model_validate(get(finance, "/v1/revenue/mrr?from=2025-11&to=2026-12").json())
    MovementsOut.model_validate(get(finance, "/v1/revenue/movements?month=2026-10").json())
    RetentionOut.model_validate(get(finance, "/v1/revenue/retention?month=2026-12").json())
