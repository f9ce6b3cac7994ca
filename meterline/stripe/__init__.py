"""The Stripe gateway: the client, catalog sync, subscriptions (and the reporter's meter events).

Only this package talks to Stripe. See README.md here.
"""

from meterline.stripe.catalog_apply import apply_catalog
from meterline.stripe.catalog_sync import (
    FORMULA,
    ApplyResult,
    CatalogSync,
    MemoryStripeObjectRepository,
    StripeObject,
    StripeObjectRepository,
    SyncReport,
    apply_and_sync,
    meter_event_name,
    price_lookup_key,
)
from meterline.stripe.client import StripeClient, StripeError, stripe_client
from meterline.stripe.postgres import PostgresStripeObjectRepository, PostgresWebhookEventStore
from meterline.stripe.subscriptions import SubscriptionSync, ensure_stripe_customer, to_subscription
from meterline.stripe.webhook_events import (
    InvalidWebhook,
    MemoryWebhookEventStore,
    RejectedWebhook,
    StripeEvent,
    WebhookEventStore,
    parse_event,
)
from meterline.stripe.webhook_signature import signature_problem

__all__ = [
    "FORMULA",
    "ApplyResult",
    "CatalogSync",
    "InvalidWebhook",
    "MemoryStripeObjectRepository",
    "MemoryWebhookEventStore",
    "PostgresStripeObjectRepository",
    "PostgresWebhookEventStore",
    "RejectedWebhook",
    "StripeClient",
    "StripeError",
    "StripeEvent",
    "StripeObject",
    "StripeObjectRepository",
    "SubscriptionSync",
    "SyncReport",
    "WebhookEventStore",
    "apply_and_sync",
    "apply_catalog",
    "ensure_stripe_customer",
    "meter_event_name",
    "parse_event",
    "price_lookup_key",
    "signature_problem",
    "stripe_client",
    "to_subscription",
]
