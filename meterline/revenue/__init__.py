"""Revenue events: subscription states from Stripe, kept per tenant (see README.md)."""

from meterline.revenue.listener import RevenueListener
from meterline.revenue.model import Discount, Item, SubscriptionState
from meterline.revenue.parse import BadSubscription, customer_of, subscription_state
from meterline.revenue.store import MemoryRevenueEventStore, RevenueEventStore

__all__ = [
    "BadSubscription",
    "Discount",
    "Item",
    "MemoryRevenueEventStore",
    "RevenueEventStore",
    "RevenueListener",
    "SubscriptionState",
    "customer_of",
    "subscription_state",
]
