"""The Stripe client: the one place a `stripe.StripeClient` is built from settings."""

from __future__ import annotations

import stripe

from meterline.settings import StripeSettings

# The names code outside the gateway uses for the client it holds and for any failure of a
# call through it (Stripe unreachable, or refusing): the SDK's own types.
StripeClient = stripe.StripeClient
StripeError = stripe.StripeError


def stripe_client(settings: StripeSettings) -> stripe.StripeClient:
    """A client for `settings.api_base`, used for both the `api` and `meter_events` bases.

    Retries (`max_network_retries`) cover 409, 5xx and connection errors; every POST carries an
    Idempotency-Key the SDK reuses on its own retries.
    """
    return stripe.StripeClient(
        settings.api_key,
        base_addresses={"api": settings.api_base, "meter_events": settings.api_base},
        max_network_retries=settings.max_network_retries,
    )
