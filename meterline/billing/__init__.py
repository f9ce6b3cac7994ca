"""Self-serve billing: checkout for plans and credit packs, fulfilled once per session.

The Stripe calls are in `meterline.stripe`; the HTTP routes in `entitlements_api.billing`.
See README.md here.
"""

from meterline.billing.account import BillingAccount
from meterline.billing.checkout import BillingCheckout, CheckoutPorts, CheckoutRequest
from meterline.billing.fulfilments import (
    Fulfilment,
    FulfilmentRepository,
    MemoryFulfilmentRepository,
)
from meterline.billing.overview import BillingOverview
from meterline.billing.plan_change import ChangePreview, ChangeResult, PendingChange, PlanChanges
from meterline.billing.postgres import PostgresFulfilmentRepository
from meterline.billing.seats import Seats

__all__ = [
    "BillingAccount",
    "BillingCheckout",
    "BillingOverview",
    "ChangePreview",
    "ChangeResult",
    "CheckoutPorts",
    "CheckoutRequest",
    "Fulfilment",
    "FulfilmentRepository",
    "MemoryFulfilmentRepository",
    "PendingChange",
    "PlanChanges",
    "PostgresFulfilmentRepository",
    "Seats",
]
