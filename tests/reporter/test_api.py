"""The finance API over real Postgres and the emulator: auth, listing, status changes, CSV."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from meterline.tenants import PostgresTenantRepository
from reporter.api import create_app
from tests.reporter.support import (
    add_usage,
    emulator_clock,
    make_world,
    reporter_for,
    settings_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def finance(pg_conninfo, stripe_emulator, stripe_client):
    control, emulator = stripe_emulator.control, stripe_emulator.emulator
    world = make_world(pg_conninfo, stripe_client, n_customers=2)
    clock = emulator_clock(control)
    reporter = reporter_for(world, stripe_client, clock)
    a, _ = world.customers.values()
    when = clock.now() - timedelta(days=1)
    add_usage(world, a.key, when, 30)
    reporter.push()
    for record in emulator.store.meter_events:  # lost by Stripe, as the drop fault does
        record["status"] = "dropped"
        emulator.store.identifiers.pop(record["identifier"], None)
    reporter.reconcile(when.date(), "manual")
    repo = PostgresTenantRepository(world.pool)
    keys = {scope: repo.create_key("acme", [scope])[1] for scope in ("read", "admin", "ingest")}
    with TestClient(create_app(reporter)) as client:
        yield client, keys, reporter, world


def _auth(key):
    return {"Authorization": f"Bearer {key}"}


def test_alerts_need_a_read_key_and_list_open_ones(finance):
    client, keys, _, _ = finance
    assert client.get("/v1/reconciliation/alerts").status_code == 401
    assert client.get("/v1/reconciliation/alerts", headers=_auth(keys["ingest"])).status_code == 403
    answer = client.get("/v1/reconciliation/alerts?status=open", headers=_auth(keys["read"]))
    assert answer.status_code == 200
    body = answer.json()
    assert [a["kind"] for a in body["data"]] == ["missing_in_stripe"]
    assert body["data"][0]["difference"] == -30 and body["totals"]["open"] == 1
    assert body["totals"]["money_minor"] == {"usd": 15.0}


def test_bad_input_is_a_clear_4xx(finance):
    client, keys, _, _ = finance
    bad = client.get("/v1/reconciliation/alerts?status=bogus", headers=_auth(keys["read"]))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "status"
    assert (
        client.get("/v1/reconciliation/alerts/999", headers=_auth(keys["read"])).status_code == 404
    )
    assert (
        client.get("/v1/reconciliation/alerts/abc", headers=_auth(keys["read"])).status_code == 422
    )
    repair = client.post(
        "/v1/reconciliation/alerts/1/repair",
        json={"action": "explode"},
        headers=_auth(keys["admin"]),
    )
    assert repair.status_code in (404, 422)


def test_acknowledge_then_resolve_with_notes_needs_admin(finance):
    client, keys, _, _ = finance
    alert_id = client.get("/v1/reconciliation/alerts", headers=_auth(keys["read"])).json()["data"][
        0
    ]["id"]
    url = f"/v1/reconciliation/alerts/{alert_id}"
    assert (
        client.post(url + "/resolve", json={"note": "x"}, headers=_auth(keys["read"])).status_code
        == 403
    )
    ack = client.post(url + "/acknowledge", json={"note": "looking"}, headers=_auth(keys["admin"]))
    assert ack.status_code == 200 and ack.json()["status"] == "acknowledged"
    done = client.post(url + "/resolve", json={"note": "resent"}, headers=_auth(keys["admin"]))
    assert done.json()["status"] == "resolved" and done.json()["note"] == "looking / resent"
    again = client.post(url + "/resolve", json={"note": "again"}, headers=_auth(keys["admin"]))
    assert again.status_code == 409
    assert (
        client.get("/v1/reconciliation/alerts?status=open", headers=_auth(keys["read"])).json()[
            "data"
        ]
        == []
    )


def test_drilldown_runs_and_csv(finance):
    client, keys, _, _ = finance
    alert = client.get("/v1/reconciliation/alerts", headers=_auth(keys["read"])).json()["data"][0]
    detail = client.get(
        f"/v1/reconciliation/alerts/{alert['id']}", headers=_auth(keys["read"])
    ).json()
    assert detail["repairs_offered"] == ["resend"]
    assert len(detail["drilldown"]["events"]) == 1 and len(detail["drilldown"]["ledger"]) == 1
    assert any(h["ours"] == 30 and h["stripe"] == 0 for h in detail["drilldown"]["hours"])
    runs = client.get("/v1/reconciliation/runs", headers=_auth(keys["read"])).json()["data"]
    assert runs[0]["status"] == "alerts" and runs[0]["alerts"] == 1
    exported = client.get("/v1/reconciliation/alerts.csv", headers=_auth(keys["read"]))
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert exported.headers["content-type"].startswith("text/csv")
    assert rows[0]["kind"] == "missing_in_stripe" and rows[0]["difference"] == "-30.0"
    repaired = client.post(
        f"/v1/reconciliation/alerts/{alert['id']}/repair", json={"action": "resend"},
        headers=_auth(keys["admin"]),
    )  # fmt: skip
    assert repaired.status_code == 200 and "1 delivered" in repaired.json()["outcome"]


def test_health_and_metrics(finance):
    client, _, _, _ = finance
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").json() == {"status": "ready"}
    text = client.get("/metrics").text
    for name in (
        "meterline_reporter_events_total", "meterline_reporter_stripe_request_seconds",
        "meterline_reporter_open_alerts 1.0", "meterline_reporter_last_success_timestamp_seconds",
    ):  # fmt: skip
        assert name in text


def test_reports_run_pushes_only_the_callers_tenant(pg_conninfo, stripe_emulator, stripe_client):
    control = stripe_emulator.control
    acme = make_world(pg_conninfo, stripe_client, n_customers=1, name="acme")
    other = make_world(pg_conninfo, stripe_client, n_customers=1, name="other")
    clock = emulator_clock(control)
    reporter = reporter_for(acme, stripe_client, clock, settings_for(retry_max_attempts=1))
    when = clock.now() - timedelta(hours=3)
    add_usage(other, "cust_0", when, 9)
    control.set_faults(rate_500=1.0, paths=["/v1/billing/meter_events"])
    assert reporter.pusher.run([other.tenant_id]).left_pending == 1
    control.clear_faults()
    add_usage(acme, "cust_0", when, 4)
    key = PostgresTenantRepository(acme.pool).create_key("acme", ["admin"])[1]
    with TestClient(create_app(reporter)) as client:
        answer = client.post("/v1/reports/run", headers=_auth(key))
    assert answer.status_code == 200
    assert (answer.json()["delivered"], answer.json()["resent"]) == (1, 0)
    assert control.meter_events(event_name=other.event_name) == []
    with other.pool.connection() as conn:
        statuses = conn.execute(
            "SELECT status FROM report_ledger WHERE tenant_id = %s", (other.tenant_id,)
        ).fetchall()
    assert statuses == [("pending",)]
