"""`DunningWebhooks`: dunning wrapped around the Stripe event handler (billing, then sync).

The wrapped handler runs first, so the subscription it syncs is current when dunning reads its
status; dunning then runs on every delivery, also one the wrapped handler found a duplicate:
when dunning failed on an earlier delivery (Stripe unreachable, a crash), the retry takes the
steps it missed, and a step already taken is not taken again.
"""

from __future__ import annotations

from typing import Protocol

from meterline.dunning.service import Dunning
from meterline.stripe.webhook_events import StripeEvent


class EventHandler(Protocol):
    def handle(self, event: StripeEvent) -> str: ...


class DunningWebhooks:
    def __init__(self, inner: EventHandler, dunning: Dunning) -> None:
        self._inner = inner
        self._dunning = dunning

    def handle(self, event: StripeEvent) -> str:
        """The wrapped handler's outcome; raises Unavailable when Stripe cannot be read."""
        outcome = self._inner.handle(event)
        self._dunning.on_event(event)
        return outcome
