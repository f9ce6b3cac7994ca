"""`DunningWebhooks`: dunning runs after the wrapped handler on every delivery, also one the
handler found a duplicate (an earlier delivery may have failed in dunning), and a Stripe
outage in dunning reaches the webhook (503, Stripe retries)."""

from __future__ import annotations

import pytest

from meterline.dunning import DunningWebhooks
from meterline.errors import Unavailable
from meterline.stripe.webhook_events import StripeEvent
from tests.dunning.support import T0, invoice, make_kit


class Inner:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def handle(self, event: StripeEvent) -> str:
        outcome = "duplicate" if event.id in self.seen else "applied"
        self.seen.append(event.id)
        return outcome


def test_a_redelivery_after_a_failure_in_dunning_takes_the_missed_steps():
    kit, inner = make_kit(), Inner()
    handler = DunningWebhooks(inner, kit.dunning)
    kit.stripe_says(invoice(1), "past_due")
    event = kit.event("invoice.payment_failed", invoice(1), T0)
    kit.invoices.down = True
    with pytest.raises(Unavailable):
        handler.handle(event)
    assert kit.published() == []
    kit.invoices.down = False
    assert handler.handle(event) == "duplicate"  # the sync had stored it already
    assert kit.published() == [("payment.failed", None), ("dunning.notice", "notice")]
    assert handler.handle(event) == "duplicate"
    assert len(kit.published()) == 2
