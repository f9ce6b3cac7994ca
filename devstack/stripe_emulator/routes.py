"""The table of emulated API endpoints: (method, path, handler).

Specific paths come before `{id}` paths (`/v1/prices/search` before `/v1/prices/{id}`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import (
    catalog,
    changes,
    checkout,
    events,
    invoices,
    meters,
    payment_methods,
    portal,
    sessions,
    subscriptions,
)
from .core import Call, Emulator

Handler = Callable[[Emulator, Call], dict[str, Any]]

TABLE: list[tuple[str, str, Handler]] = [
    ("POST", "/v1/customers", catalog.create_customer),
    ("GET", "/v1/customers", catalog.list_customers),
    ("GET", "/v1/customers/search", catalog.search_customers),
    ("GET", "/v1/customers/{id}", catalog.retrieve_customer),
    ("GET", "/v1/customers/{id}/payment_methods", payment_methods.list_for_customer),
    ("POST", "/v1/customers/{id}", catalog.update_customer),
    ("DELETE", "/v1/customers/{id}", catalog.delete_customer),
    ("POST", "/v1/products", catalog.create_product),
    ("GET", "/v1/products", catalog.list_products),
    ("GET", "/v1/products/search", catalog.search_products),
    ("GET", "/v1/products/{id}", catalog.retrieve_product),
    ("POST", "/v1/products/{id}", catalog.update_product),
    ("POST", "/v1/prices", catalog.create_price),
    ("GET", "/v1/prices", catalog.list_prices),
    ("GET", "/v1/prices/search", catalog.search_prices),
    ("GET", "/v1/prices/{id}", catalog.retrieve_price),
    ("POST", "/v1/prices/{id}", catalog.update_price),
    ("POST", "/v1/subscriptions", subscriptions.create),
    ("GET", "/v1/subscriptions", subscriptions.list_subscriptions),
    ("GET", "/v1/subscriptions/{id}", subscriptions.retrieve),
    ("POST", "/v1/subscriptions/{id}", changes.update),
    ("DELETE", "/v1/subscriptions/{id}", subscriptions.cancel),
    ("POST", "/v1/subscriptions/{id}/pause", subscriptions.pause),
    ("POST", "/v1/subscriptions/{id}/resume", subscriptions.resume),
    ("GET", "/v1/subscription_items", subscriptions.list_items),
    ("GET", "/v1/subscription_items/{id}", subscriptions.retrieve_item),
    ("GET", "/v1/payment_methods", payment_methods.list_methods),
    ("GET", "/v1/payment_methods/{id}", payment_methods.retrieve),
    ("POST", "/v1/payment_methods/{id}/attach", payment_methods.attach),
    ("POST", "/v1/payment_methods/{id}/detach", payment_methods.detach),
    ("POST", "/v1/setup_intents", payment_methods.create_setup_intent),
    ("GET", "/v1/setup_intents", payment_methods.list_setup_intents),
    ("GET", "/v1/setup_intents/{id}", payment_methods.retrieve_setup_intent),
    ("POST", "/v1/setup_intents/{id}/confirm", payment_methods.confirm_setup_intent),
    ("POST", "/v1/setup_intents/{id}/cancel", payment_methods.cancel_setup_intent),
    ("POST", "/v1/billing_portal/sessions", portal.create),
    ("POST", "/v1/checkout/sessions", checkout.create),
    ("GET", "/v1/checkout/sessions", checkout.list_sessions),
    ("GET", "/v1/checkout/sessions/{id}", checkout.retrieve),
    ("GET", "/v1/checkout/sessions/{id}/line_items", checkout.line_items),
    ("POST", "/v1/checkout/sessions/{id}/expire", checkout.expire),
    ("POST", "/v1/invoices/create_preview", changes.preview),
    ("GET", "/v1/invoices", invoices.list_invoices),
    ("GET", "/v1/invoices/{id}", invoices.retrieve),
    ("GET", "/v1/invoices/{id}/lines", invoices.list_lines),
    ("POST", "/v1/invoices/{id}/pay", invoices.pay_endpoint),
    ("GET", "/v1/events", events.list_events),
    ("GET", "/v1/events/{id}", events.retrieve_event),
    ("POST", "/v1/billing/meters", meters.create_meter),
    ("GET", "/v1/billing/meters", meters.list_meters),
    ("GET", "/v1/billing/meters/{id}", meters.retrieve_meter),
    ("POST", "/v1/billing/meters/{id}", meters.update_meter),
    ("POST", "/v1/billing/meters/{id}/deactivate", meters.deactivate_meter),
    ("POST", "/v1/billing/meters/{id}/reactivate", meters.reactivate_meter),
    ("GET", "/v1/billing/meters/{id}/event_summaries", meters.list_summaries),
    ("POST", "/v1/billing/meter_events", meters.create_meter_event),
    ("POST", "/v1/billing/meter_event_adjustments", meters.create_adjustment),
    ("POST", "/v2/billing/meter_event_session", sessions.create_session),
    ("POST", "/v2/billing/meter_event_stream", sessions.stream),
    ("POST", "/v2/billing/meter_events", sessions.create_event),
    ("POST", "/v2/billing/meter_event_adjustments", sessions.create_adjustment),
]
