"""PaymentMethods and SetupIntents with Stripe's test card ids (shared/STRIPE-BILLING.md, d).

A test id (`pm_card_visa`, ...) stands for a card: attaching it or confirming a SetupIntent
with it makes a new `pm_...` object from it. The decline cards cannot be attached (402
`card_error`, with their decline code); `pm_card_chargeCustomerFail` attaches, and every charge
of it fails (`charge_fails`, read when an invoice is paid). A customer's default is
`invoice_settings.default_payment_method`, which must be attached to it.

The test ids are those of STRIPE-BILLING.md d: `pm_card_visa`, `pm_card_mastercard`,
`pm_card_amex`, `pm_card_visa_debit`, `pm_card_chargeCustomerFail` and the decline cards.
Attach (a test id makes a new `pm_...`), detach (permanent; clears the default), retrieve,
list by customer and type, `GET /v1/customers/{id}/payment_methods`; the default may also be
set at customer creation with `payment_method`. SetupIntents: create (`confirm`), retrieve,
list, confirm, cancel; a confirmed one attaches its card to the customer; a decline leaves
`requires_payment_method` with `last_setup_error`. Checkout saves the card it was paid with
(the control call's `payment_method`, `pm_card_visa` by default) as the customer's default
when it had none.
"""

from __future__ import annotations

import copy
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from .core import Call, Emulator
from .errors import StripeError, invalid
from .forms import Params
from .listing import newest_first, paginate
from .state import new_id

JSON = dict[str, Any]


@dataclass(frozen=True)
class TestCard:
    brand: str
    last4: str
    funding: str = "credit"
    charge_fails: bool = False


CARDS = {
    "pm_card_visa": TestCard("visa", "4242"),
    "pm_card_visa_debit": TestCard("visa", "5556", "debit"),
    "pm_card_mastercard": TestCard("mastercard", "4444"),
    "pm_card_amex": TestCard("amex", "8431"),
    "pm_card_chargeCustomerFail": TestCard("visa", "0341", charge_fails=True),
}
DECLINES = {
    "pm_card_visa_chargeDeclined": ("card_declined", "generic_decline"),
    "pm_card_chargeDeclined": ("card_declined", "generic_decline"),  # older docs' alias
    "pm_card_visa_chargeDeclinedInsufficientFunds": ("card_declined", "insufficient_funds"),
    "pm_card_visa_chargeDeclinedLostCard": ("card_declined", "lost_card"),
    "pm_card_visa_chargeDeclinedStolenCard": ("card_declined", "stolen_card"),
    "pm_card_chargeDeclinedExpiredCard": ("expired_card", "expired_card"),
    "pm_card_chargeDeclinedIncorrectCvc": ("incorrect_cvc", "incorrect_cvc"),
    "pm_card_chargeDeclinedProcessingError": ("processing_error", "processing_error"),
    "pm_card_visa_chargeDeclinedVelocityLimitExceeded": (
        "card_declined",
        "card_velocity_exceeded",
    ),
}


def declined(test_id: str) -> StripeError:
    code, decline_code = DECLINES[test_id]
    return StripeError(
        402,
        "Your card was declined.",
        type_="card_error",
        code=code,
        decline_code=decline_code,
        param="payment_method",
    )


def _from_test_card(emu: Emulator, test_id: str) -> JSON:
    """A new PaymentMethod made from a test id, or the 402 of a decline card."""
    if test_id in DECLINES:
        raise declined(test_id)
    card = CARDS[test_id]
    method: JSON = {
        "id": new_id("pm", 24),
        "object": "payment_method",
        "type": "card",
        "created": emu.now(),
        "customer": None,
        "livemode": False,
        "metadata": {},
        "billing_details": {"address": None, "email": None, "name": None, "phone": None},
        "allow_redisplay": "unspecified",
        "card": {
            "brand": card.brand,
            "display_brand": card.brand,
            "last4": card.last4,
            "exp_month": 12,
            "exp_year": 2034,
            "funding": card.funding,
            "country": "US",
            "fingerprint": hashlib.sha256(test_id.encode()).hexdigest()[:16],
        },
        "_charge_fails": card.charge_fails,
    }
    emu.store.put("payment_method", method)
    return method


def resolve(emu: Emulator, method_id: str, param: str = "payment_method") -> JSON:
    """The PaymentMethod `method_id` names: a stored one, or one made from a test id."""
    if method_id in CARDS or method_id in DECLINES:
        return _from_test_card(emu, method_id)
    return emu.store.get("payment_method", method_id, param=param)


def retrieve(emu: Emulator, call: Call) -> JSON:
    """GET /v1/payment_methods/{id}."""
    return emu.store.get("payment_method", call.arg("id"))


def attach(emu: Emulator, call: Call) -> JSON:
    """POST /v1/payment_methods/{id}/attach `customer`."""
    method = resolve(emu, call.arg("id"), param="id")
    return attach_to(emu, method, call.params.req("customer"))


def attach_to(emu: Emulator, method: JSON, customer_id: str) -> JSON:
    customer = emu.store.get("customer", customer_id, param="customer")
    if customer.get("deleted"):
        raise invalid(f"No such customer: '{customer_id}'", "customer", "resource_missing")
    if method.get("_detached"):
        raise invalid(
            "The payment method you provided has already been detached and cannot be reused.",
            "payment_method",
        )
    if method["customer"] not in (None, customer_id):
        raise invalid("The payment method is attached to another customer.", "payment_method")
    if method["customer"] is None:
        method["customer"] = customer_id
        emu.emit("payment_method.attached", method)
    return method


def detach(emu: Emulator, call: Call) -> JSON:
    """POST /v1/payment_methods/{id}/detach: permanent; the default is cleared with it."""
    method = emu.store.get("payment_method", call.arg("id"))
    if method["customer"] is None:
        raise invalid("The payment method is not attached to a customer.", "payment_method")
    owner = emu.store.find("customer", method["customer"])
    settings = (owner or {}).get("invoice_settings") or {}
    if settings.get("default_payment_method") == method["id"]:
        settings["default_payment_method"] = None
    previous = {"customer": method["customer"]}
    method["customer"], method["_detached"] = None, True
    emu.emit("payment_method.detached", method, previous)
    return method


def list_methods(emu: Emulator, call: Call) -> JSON:
    """GET /v1/payment_methods?customer=&type=."""
    return _listed(emu, call.params, call.params.str("customer"), "/v1/payment_methods")


def list_for_customer(emu: Emulator, call: Call) -> JSON:
    """GET /v1/customers/{id}/payment_methods?type=."""
    customer = call.arg("id")
    emu.store.get("customer", customer)
    return _listed(emu, call.params, customer, f"/v1/customers/{customer}/payment_methods")


def _listed(emu: Emulator, p: Params, customer: str | None, url: str) -> JSON:
    kind = p.str("type")
    found = [
        m
        for m in newest_first(emu.store.table("payment_method").values())
        if m["customer"] is not None
        and (customer is None or m["customer"] == customer)
        and (kind is None or m["type"] == kind)
    ]
    return paginate(found, p, url)


def set_default(emu: Emulator, customer: JSON, method_id: str | None) -> None:
    """`invoice_settings.default_payment_method` of `customer` (attached methods only)."""
    param = "invoice_settings[default_payment_method]"
    if method_id is not None:
        method = emu.store.get("payment_method", method_id, param=param)
        if method["customer"] != customer["id"]:
            raise invalid(
                f"The customer does not have a payment method with the ID {method_id}.", param
            )
    settings = customer.setdefault("invoice_settings", {})
    settings["default_payment_method"] = method_id


def charge_fails(emu: Emulator, customer_id: str) -> bool:
    """Whether charging the customer's default payment method fails (a test card that does)."""
    customer = emu.store.find("customer", customer_id) or {}
    method_id = (customer.get("invoice_settings") or {}).get("default_payment_method")
    method = emu.store.find("payment_method", method_id) if method_id else None
    return bool(method and method.get("_charge_fails"))


def create_setup_intent(emu: Emulator, call: Call) -> JSON:
    """POST /v1/setup_intents: `customer`, `payment_method`, `confirm`, `usage`, `metadata`."""
    p = call.params
    customer = p.str("customer")
    if customer is not None:
        emu.store.get("customer", customer, param="customer")
    intent_id = new_id("seti", 24)
    intent: JSON = {
        "id": intent_id,
        "object": "setup_intent",
        "client_secret": f"{intent_id}_secret_{secrets.token_hex(12)}",
        "created": emu.now(),
        "customer": customer,
        "payment_method": None,
        "usage": p.str("usage") or "off_session",
        "status": "requires_payment_method",
        "last_setup_error": None,
        "latest_attempt": None,
        "next_action": None,
        "cancellation_reason": None,
        "payment_method_types": ["card"],
        "metadata": dict(p.dict("metadata")),
        "livemode": False,
    }
    emu.store.put("setup_intent", intent)
    emu.emit("setup_intent.created", intent)
    method = p.str("payment_method")
    if method is not None:
        intent["payment_method"] = method
        intent["status"] = "requires_confirmation"
    if p.bool("confirm", False):
        _confirm(emu, intent, method)
    return intent


def retrieve_setup_intent(emu: Emulator, call: Call) -> JSON:
    """GET /v1/setup_intents/{id}."""
    return emu.store.get("setup_intent", call.arg("id"))


def confirm_setup_intent(emu: Emulator, call: Call) -> JSON:
    """POST /v1/setup_intents/{id}/confirm `payment_method`."""
    intent = emu.store.get("setup_intent", call.arg("id"))
    if intent["status"] not in ("requires_payment_method", "requires_confirmation"):
        raise invalid(
            f"You cannot confirm this SetupIntent because it has a status of {intent['status']}."
        )
    _confirm(emu, intent, call.params.str("payment_method") or intent["payment_method"])
    return intent


def cancel_setup_intent(emu: Emulator, call: Call) -> JSON:
    """POST /v1/setup_intents/{id}/cancel."""
    intent = emu.store.get("setup_intent", call.arg("id"))
    if intent["status"] in ("succeeded", "canceled"):
        raise invalid(
            f"You cannot cancel this SetupIntent because it has a status of {intent['status']}."
        )
    intent["status"] = "canceled"
    intent["cancellation_reason"] = call.params.str("cancellation_reason")
    emu.emit("setup_intent.canceled", intent)
    return intent


def list_setup_intents(emu: Emulator, call: Call) -> JSON:
    """GET /v1/setup_intents?customer=."""
    customer = call.params.str("customer")
    found = [
        i
        for i in newest_first(emu.store.table("setup_intent").values())
        if customer is None or i["customer"] == customer
    ]
    return paginate(found, call.params, "/v1/setup_intents")


def _confirm(emu: Emulator, intent: JSON, method_id: str | None) -> None:
    if method_id is None:
        raise invalid(
            "You cannot confirm this SetupIntent because it's missing a payment method.",
            "payment_method",
        )
    try:
        method = resolve(emu, method_id)
    except StripeError as exc:
        if exc.type != "card_error":
            raise
        intent["status"], intent["payment_method"] = "requires_payment_method", None
        intent["last_setup_error"] = copy.deepcopy(exc.body()["error"])
        emu.emit("setup_intent.setup_failed", intent)
        raise
    if intent["customer"] is not None:
        attach_to(emu, method, intent["customer"])
    intent["status"], intent["payment_method"] = "succeeded", method["id"]
    intent["last_setup_error"] = None
    emu.emit("setup_intent.succeeded", intent)
