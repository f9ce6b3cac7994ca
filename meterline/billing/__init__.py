"""Self-serve billing: checkout for plans and credit packs, fulfilled once per session.

The Stripe calls are in `meterline.stripe`; the HTTP routes in `entitlements_api.billing`.
See README.md here.
"""

from meterline.billing.checkout import BillingCheckout, CheckoutPorts, CheckoutRequest
from meterline.billing.fulfilments import (
    Fulfilment,
    FulfilmentRepository,
    MemoryFulfilmentRepository,
    PostgresFulfilmentRepository,
)

__all__ = [
    "BillingCheckout",
    "CheckoutPorts",
    "CheckoutRequest",
    "Fulfilment",
    "FulfilmentRepository",
    "MemoryFulfilmentRepository",
    "PostgresFulfilmentRepository",
]
