"""`StripeInvoiceLines` against the Stripe emulator: an invoice whose object holds only its
first page of lines is read whole from Stripe, and a line naming only its price id is told
metered or licensed by the price Stripe holds."""

from __future__ import annotations

import pytest
import stripe

from meterline.revenue.invoices import metered_invoice
from meterline.stripe.revenue_history import StripeInvoiceLines, invoice_history
from tests.fixtures.stripe import StripeEmulatorHandle

pytestmark = pytest.mark.integration


def test_all_lines_are_read_and_only_metered_ones_counted(
    stripe_emulator: StripeEmulatorHandle, stripe_client: stripe.StripeClient
) -> None:
    client = stripe_client
    meter = client.v1.billing.meters.create(
        {"display_name": "calls", "event_name": "calls", "default_aggregation": {"formula": "sum"}}
    )
    metered = client.v1.prices.create(
        {"unit_amount": 5, "currency": "usd", "product_data": {"name": "calls"},
         "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id}}
    )  # fmt: skip
    seat = client.v1.prices.create(
        {"unit_amount": 1000, "currency": "usd", "product_data": {"name": "seat"},
         "recurring": {"interval": "month"}}
    )  # fmt: skip
    customer = client.v1.customers.create({"name": "g"}).id
    sub = client.v1.subscriptions.create(
        {"customer": customer, "items": [{"price": metered.id}, {"price": seat.id, "quantity": 3}]}
    )
    payload = {"stripe_customer_id": customer, "value": "40"}
    client.v1.billing.meter_events.create({"event_name": "calls", "payload": payload})
    stripe_emulator.control.close_period(sub.id)
    invoices = invoice_history(client, [customer])
    (invoice,) = [i for i in invoices if i["billing_reason"] == "subscription_cycle"]
    assert len(invoice["lines"]["data"]) == 2  # 40 calls x 5, and 3 seats for the next month
    truncated = {**invoice, "lines": {"data": invoice["lines"]["data"][:1], "has_more": True}}
    lines = StripeInvoiceLines(client)
    assert len(lines.lines(truncated)) == 2  # the rest fetched from Stripe
    found = metered_invoice(truncated, "g", lines)
    assert found is not None and (found.amount, found.status) == (200, "paid")
    assert [lines.is_metered(x) for x in lines.lines(invoice)] == [True, False]
