"""Issue 24's acceptance: a payment failure walks the whole dunning sequence on the emulator's
clock, and a payment restores the plan with all usage kept.

Through the real services: the entitlements API (HTTP, Postgres, Redis), the emulator through
the stripe SDK delivering its webhooks (every event twice, with jitter so they overtake each
other), the reporter as `python -m reporter` builds it (its tick runs the timed steps, on the
API's clock, which follows the emulator's), and the outbound webhooks delivered by the
dispatcher to a receiving endpoint that verifies every signature.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from meterline.catalog import Catalog, catalog_from_document
from meterline.dunning import DunningSettings
from meterline.notify.postgres.endpoints import EndpointChange, EndpointStore
from meterline.postgres import open_pool
from meterline.settings import DatabaseSettings, StripeSettings
from meterline.tenants import PostgresTenantRepository
from reporter.service import Reporter, build
from tests.billing.conftest import billing_catalog, decision
from tests.billing.test_plan_changes import _advance, _settle, _subscribe
from tests.entitlements.conftest import Api, api_env, serve_api
from tests.fixtures.stripe import StripeEmulatorHandle
from tests.notify.support import Receiver, Setup
from tests.reporter.support import settings_for

__all__ = ["api_env"]
pytestmark = pytest.mark.integration

DAY = 86_400
# Recovery offer 5 days after the downgrade (7 by default), so the whole walk (day 26) stays
# inside the billing period that follows the failed invoice on any calendar month.
DUNNING = DunningSettings(recovery_after_days=5)
STEPS = ("dunning.notice", "dunning.reminder", "dunning.final_warning", "dunning.downgraded",
         "dunning.recovery_offer", "dunning.recovered")  # fmt: skip


def dunning_catalog() -> Catalog:
    """The billing catalog, with usage counted per billing period on Free and Basic (so one
    period's usage is compared across the plan changes) and a past-due grace that covers
    Stripe's retries (so the downgrade comes with the final failure, not before)."""
    doc: dict[str, Any] = billing_catalog().to_document()
    for plan in doc["plans"]:
        if plan["key"] in ("free", "basic"):
            plan["features"]["api_calls"]["reset"] = "billing_period"
    doc["payment_policies"]["past_due"] = {"grace_days": 30, "then": "free"}
    return catalog_from_document(doc)


@pytest.fixture
def api(api_env: dict[str, str], stripe_emulator: StripeEmulatorHandle) -> Iterator[Api]:
    for served in serve_api(api_env, stripe_emulator, dunning_catalog(), DUNNING):
        with open_pool(api_env["METERLINE_DATABASE_URL"], max_size=1) as pool:
            tenants = PostgresTenantRepository(pool)
            served.keys["billing"] = tenants.create_key("acme", ["billing"])[1]
        yield served


class World:
    """The API, the reporter (timed steps), the dispatcher and the receiving endpoint."""

    def __init__(self, api: Api, pool: Any) -> None:
        self.api = api
        self.receiver = Receiver()
        url = self.receiver.start()
        endpoints = EndpointStore(pool, allow_private=True)
        self.secret = endpoints.create(api.tenant_id, EndpointChange(url))[1]
        self.dispatcher = Setup(pool, api.tenant_id, endpoints).dispatcher()
        env = api.env
        self.reporter: Reporter = build(
            DatabaseSettings(url=env["METERLINE_DATABASE_URL"]),
            StripeSettings(api_base=api.stripe.url, api_key=api.stripe.api_key),
            settings_for(), clock=api.clock, pool_size=2, dunning=DUNNING,
        )  # fmt: skip

    def advance(self, seconds: float) -> None:
        """Move the emulator's clock (retries that come due are made, their webhooks
        delivered), then run the reporter's tick on the API's clock, then deliver."""
        self.api.stripe.control.advance_clock(seconds)
        _settle(self.api)
        self.tick()

    def tick(self) -> None:
        self.reporter.tick()
        self.dispatcher.drain()

    def received(self) -> list[dict[str, Any]]:
        """Every payment and dunning event received, verified, in arrival order."""
        events = self.receiver.verified(self.secret)
        return [e for e in events if e["type"].split(".")[0] in ("payment", "dunning")]

    def billing(self, customer: str) -> dict[str, Any]:
        with self.api.client("billing") as http:
            answer = http.get(f"/v1/customers/{customer}/billing")
            assert answer.status_code == 200, answer.text
            return dict(answer.json())

    def close(self) -> None:
        self.receiver.stop()
        self.reporter.close()


@pytest.fixture
def world(api: Api) -> Iterator[World]:
    with open_pool(api.env["METERLINE_DATABASE_URL"], max_size=4) as pool:
        made = World(api, pool)
        try:
            yield made
        finally:
            made.close()
            api.stripe.control.webhook_options(duplicate_rate=0.0, out_of_order_jitter_seconds=0.0)


def _failing_card(api: Api, customer: str) -> None:
    """The customer's default card becomes one whose charges fail (attaching it succeeds)."""
    with api.client("billing") as http:
        intent = http.post(f"/v1/customers/{customer}/payment_methods/setup_intent").json()
        api.stripe.client().v1.setup_intents.confirm(
            intent["id"], {"payment_method": "pm_card_chargeCustomerFail"}
        )
    _default_card(api, customer, "0341")


def _default_card(api: Api, customer: str, last4: str) -> None:
    with api.client("billing") as http:
        cards = http.get(f"/v1/customers/{customer}/payment_methods").json()["data"]
        card = next(c["id"] for c in cards if c["last4"] == last4)
        answer = http.post(f"/v1/customers/{customer}/payment_methods/{card}/default")
        assert answer.status_code == 204, answer.text


def _use(api: Api, customer: str, amount: int, event_id: str) -> None:
    with api.client("ingest") as http:
        body = {"amount": amount, "event_id": event_id}
        answer = http.post(f"/v1/customers/{customer}/entitlements/api_calls/consume", json=body)
        assert answer.status_code == 200 and answer.json()["has_access"], answer.text


def _walked(world: World) -> list[tuple[str, str | None]]:
    return [(e["type"], e["data"].get("step")) for e in world.received()]


def test_a_payment_failure_walks_the_whole_sequence_and_a_payment_restores_the_plan(
    api: Api, world: World
) -> None:
    _subscribe(api, "u1", "basic")
    api.stripe.control.webhook_options(duplicate_rate=1.0, out_of_order_jitter_seconds=0.2)
    _failing_card(api, "u1")
    sub = api.deps.subscriptions.get(api.tenant_id, "u1")
    assert sub is not None and sub.current_period_end is not None
    # The period closes; its invoice's first charge fails (day 0).
    _advance(api, sub.current_period_end.timestamp() - api.stripe.control.now() + 5)
    world.tick()
    _use(api, "u1", 30, "u1-a")  # usage of the new period, kept through every plan change
    first = world.billing("u1")["dunning"]
    invoice = api.stripe.client().v1.invoices.retrieve(first["invoice"])
    assert (first["step"], first["next_step"], first["attempt_count"]) == ("notice", "reminder", 1)
    assert first["update_url"] == invoice.to_dict()["hosted_invoice_url"]
    assert first["update_url"].startswith("http"), "a link the customer can follow to pay"
    assert decision(api, "u1", "api_calls")["plan"] == "basic", "within the grace"
    assert _walked(world) == [("payment.failed", None), ("dunning.notice", "notice")]

    world.advance(3 * DAY + 60)  # retry 2 fails; the reminder is due
    world.advance(5 * DAY)  # retry 3 (day 8)
    world.advance(6 * DAY)  # retry 4 (day 14): the next retry is the final one
    assert world.billing("u1")["dunning"]["next_step"] == "final_warning"
    world.advance(5 * DAY)  # day 19: two days before the final retry
    assert world.billing("u1")["dunning"]["step"] == "final_warning"
    world.advance(2 * DAY)  # day 21: the final retry fails
    d = decision(api, "u1", "api_calls")
    assert (d["plan"], d["subscription_status"], d["used"], d["limit"]) == (
        "free",
        "unpaid",
        30,
        50,
    )
    shown = world.billing("u1")["dunning"]
    assert (shown["step"], shown["downgraded_to"], shown["next_step"]) == (
        "downgraded", "free", "recovery_offer",
    )  # fmt: skip
    world.advance(5 * DAY)  # the recovery offer

    _default_card(api, "u1", "4242")  # the customer pays with the card that works
    api.stripe.client().v1.invoices.pay(first["invoice"])
    _settle(api)
    world.tick()
    d = decision(api, "u1", "api_calls")
    assert (d["plan"], d["subscription_status"], d["used"], d["limit"]) == (
        "basic",
        "active",
        30,
        1000,
    )
    assert world.billing("u1")["dunning"] is None

    walked = _walked(world)
    assert [t for t, _s in walked if t != "payment.failed"] == list(STEPS), walked
    assert walked.count(("payment.failed", None)) == 5
    assert [t for t, _s in walked].index("dunning.downgraded") == len(walked) - 3
    ids = [r.msg_id for r in world.receiver.requests]
    assert len(ids) == len(set(ids)), "each message delivered once"
    recovered = world.received()[-1]["data"]
    assert (recovered["restored"], recovered["plan"], recovered["invoice"]) == (
        True, "basic", first["invoice"],
    )  # fmt: skip
