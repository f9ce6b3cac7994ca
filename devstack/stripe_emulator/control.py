"""The `/_emulator/...` control API for tests and demos (no auth; loopback only).

Bodies and answers are JSON. Bad input is a 400 and an unknown object a 404, both as
`{"error": {"message": ...}}`. Every endpoint is listed in BEHAVIOUR.md beside this module.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import fields
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from . import checkout, invoices, payment_methods
from .config import WebhookConfig
from .core import Emulator, public
from .errors import StripeError
from .faults import FaultSettings, settings_from_json

JSON = dict[str, Any]
Action = Callable[[Emulator, Request, JSON], Any]


class ControlError(Exception):
    """A control-API input problem answered with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _endpoint(emu: Emulator, action: Action) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            body = await _body(request)
            result = action(emu, request, body)
            status = 200
        except ControlError as exc:
            status, result = exc.status, {"error": {"message": exc.message}}
        except StripeError as exc:
            status, result = exc.status, exc.body()
        if request.method != "GET":
            emu.persist()
        return Response(orjson.dumps(public(result)), status, media_type="application/json")

    return endpoint


async def _body(request: Request) -> JSON:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ControlError(400, "body must be JSON") from None
    if not isinstance(data, dict):
        raise ControlError(400, "body must be a JSON object")
    return data


def _number(body: JSON, name: str, default: float | None = None) -> float:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ControlError(400, f"{name} must be a number")
    return float(value)


def _flag(body: JSON, name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise ControlError(400, f"{name} must be a boolean")
    return value


def _payment(body: JSON) -> invoices.Payment:
    payment = body.get("payment", "succeed")
    if payment not in ("succeed", "fail"):
        raise ControlError(400, "payment must be 'succeed' or 'fail'")
    return "succeed" if payment == "succeed" else "fail"


def health(emu: Emulator, request: Request, body: JSON) -> JSON:
    """GET /_emulator/health."""
    return {"ok": True, "now": emu.clock.now()}


def reset(emu: Emulator, request: Request, body: JSON) -> JSON:
    """POST /_emulator/reset: forget everything, back to wall time and no faults."""
    emu.reset()
    return {"ok": True}


def clock(emu: Emulator, request: Request, body: JSON) -> JSON:
    """GET /_emulator/clock."""
    return {"now": emu.clock.now(), "offset": emu.clock.offset}


def advance(emu: Emulator, request: Request, body: JSON) -> JSON:
    """POST /_emulator/clock/advance `{"seconds", "close_due_periods": false}`: automatic
    payment retries that came due are made, then due periods closed when asked."""
    seconds = _number(body, "seconds")
    if seconds < 0:
        raise ControlError(400, "seconds must be >= 0")
    emu.clock.advance(seconds)
    retried = invoices.retry_due(emu)
    closed = _close_due(emu) if _flag(body, "close_due_periods", False) else []
    now, offset = emu.clock.now(), emu.clock.offset
    return {"now": now, "offset": offset, "invoices": closed, "retried": retried}


def _close_due(emu: Emulator) -> list[JSON]:
    closed: list[JSON] = []
    now = emu.clock.now()
    for sub in list(emu.store.table("subscription").values()):
        while (
            sub["status"] in ("active", "trialing", "past_due", "unpaid")
            and max(item["current_period_end"] for item in sub["items"]["data"]) <= now
        ):
            closed.append(invoices.close_period(emu, sub["id"]))
    return closed


def close_period(emu: Emulator, request: Request, body: JSON) -> JSON:
    """POST /_emulator/subscriptions/{id}/close_period `{"payment", "finalize": true}`."""
    sub_id = request.path_params["id"]
    return invoices.close_period(emu, sub_id, _payment(body), _flag(body, "finalize", True))


def fail_payment(emu: Emulator, request: Request, body: JSON) -> JSON:
    """POST /_emulator/subscriptions/{id}/fail_payment `{"final": false, "unpaid_after": 2}`."""
    unpaid_after = int(_number(body, "unpaid_after", 2))
    return invoices.fail_payment(
        emu, request.path_params["id"], _flag(body, "final", False), unpaid_after
    )


def finalize_invoice(emu: Emulator, request: Request, body: JSON) -> JSON:
    """POST /_emulator/invoices/{id}/finalize `{"payment"}`."""
    invoice = emu.store.get("invoice", request.path_params["id"])
    return invoices.finalize_invoice(emu, invoice, _payment(body))


def pay_invoice(emu: Emulator, request: Request, body: JSON) -> JSON:
    """POST /_emulator/invoices/{id}/pay."""
    return invoices.pay(emu, emu.store.get("invoice", request.path_params["id"]))


def complete_checkout(emu: Emulator, request: Request, body: JSON) -> JSON:
    """POST /_emulator/checkout/sessions/{id}/complete `{"email"?, "payment_method"?}`: the
    customer paid with a test card (`pm_card_visa` by default)."""
    email, card = body.get("email"), body.get("payment_method", "pm_card_visa")
    if email is not None and not isinstance(email, str):
        raise ControlError(400, "email must be a string")
    if card not in payment_methods.CARDS and card not in payment_methods.DECLINES:
        raise ControlError(400, "payment_method must be a test card id such as pm_card_visa")
    try:
        return checkout.complete(emu, request.path_params["id"], email, card)
    except ValueError as exc:
        raise ControlError(409, str(exc)) from None


def get_faults(emu: Emulator, request: Request, body: JSON) -> JSON:
    """GET /_emulator/faults: settings and what was injected so far."""
    return {**emu.faults.settings.to_json(), "injected": emu.faults.injected}


def set_faults(emu: Emulator, request: Request, body: JSON) -> JSON:
    """POST /_emulator/faults: replace the settings (re-seeds); DELETE clears them."""
    if request.method == "DELETE":
        settings = FaultSettings(seed=emu.config.seed)
    else:
        try:
            settings = settings_from_json({"seed": emu.config.seed, **body})
        except ValueError as exc:
            raise ControlError(400, str(exc)) from None
    emu.faults.configure(settings)
    return settings.to_json()


def add_endpoint(emu: Emulator, request: Request, body: JSON) -> JSON:
    """POST /_emulator/webhook_endpoints.

    Body: `{"url", "secret"?, "enabled_events"?, "extra_secrets"?}`; answers the endpoint.
    """
    url = body.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ControlError(400, "url must be an http(s) URL")
    events = body.get("enabled_events") or ["*"]
    endpoint = emu.webhooks.register(url, body.get("secret"), list(events))
    endpoint["extra_secrets"] = list(body.get("extra_secrets") or [])
    return endpoint


def list_endpoints(emu: Emulator, request: Request, body: JSON) -> JSON:
    """GET /_emulator/webhook_endpoints."""
    return {"data": list(emu.store.webhook_endpoints.values())}


def delete_endpoint(emu: Emulator, request: Request, body: JSON) -> JSON:
    """DELETE /_emulator/webhook_endpoints/{id}."""
    if emu.store.webhook_endpoints.pop(request.path_params["id"], None) is None:
        raise ControlError(404, "no such webhook endpoint")
    return {"deleted": True}


def webhook_options(emu: Emulator, request: Request, body: JSON) -> JSON:
    """POST /_emulator/webhooks/options: change WebhookConfig fields (jitter, duplicates...)."""
    known = {f.name for f in fields(WebhookConfig)}
    unknown = sorted(set(body) - known)
    if unknown:
        raise ControlError(400, f"unknown fields: {', '.join(unknown)}")
    for name, value in body.items():
        _number(body, name)
        if value < 0 or (name == "duplicate_rate" and value > 1):
            raise ControlError(400, f"{name} is out of range")
    emu.webhooks.update(**body)
    return {f.name: getattr(emu.webhooks.config, f.name) for f in fields(WebhookConfig)}


def deliveries(emu: Emulator, request: Request, body: JSON) -> JSON:
    """GET /_emulator/webhook_deliveries?event_id=&endpoint_id=&event_type=."""
    rows = _filtered(emu.store.deliveries, request, ("event_id", "endpoint_id", "event_type"))
    return {"data": rows, "pending": emu.webhooks.pending()}


def meter_events(emu: Emulator, request: Request, body: JSON) -> JSON:
    """GET /_emulator/meter_events?event_name=&customer=&status=&identifier=&source=."""
    names = ("event_name", "customer", "status", "identifier", "source")
    return {"data": _filtered(emu.store.meter_events, request, names)}


def requests_log(emu: Emulator, request: Request, body: JSON) -> JSON:
    """GET /_emulator/requests?method=&path=&status= (most recent last)."""
    rows = _filtered(emu.store.requests, request, ("method", "path"))
    status = request.query_params.get("status")
    return {"data": [r for r in rows if status is None or str(r.get("status")) == status]}


def all_events(emu: Emulator, request: Request, body: JSON) -> JSON:
    """GET /_emulator/events?type=: every emitted event, oldest first."""
    rows = _filtered(list(emu.store.table("event").values()), request, ("type",))
    return {"data": rows}


def expire_sessions(emu: Emulator, request: Request, body: JSON) -> JSON:
    """POST /_emulator/meter_event_sessions/expire: expire every v2 session token now."""
    for session in emu.store.sessions.values():
        session["expires_at"] = emu.clock.now()
    return {"expired": len(emu.store.sessions)}


def _filtered(rows: list[JSON], request: Request, names: tuple[str, ...]) -> list[JSON]:
    wanted = {n: request.query_params[n] for n in names if n in request.query_params}
    return [r for r in rows if all(str(r.get(n)) == v for n, v in wanted.items())]


def routes(emu: Emulator) -> list[BaseRoute]:
    """Every control route."""
    table: list[tuple[str, list[str], Action]] = [
        ("/_emulator/health", ["GET"], health),
        ("/_emulator/reset", ["POST"], reset),
        ("/_emulator/clock", ["GET"], clock),
        ("/_emulator/clock/advance", ["POST"], advance),
        ("/_emulator/subscriptions/{id}/close_period", ["POST"], close_period),
        ("/_emulator/subscriptions/{id}/fail_payment", ["POST"], fail_payment),
        ("/_emulator/invoices/{id}/finalize", ["POST"], finalize_invoice),
        ("/_emulator/invoices/{id}/pay", ["POST"], pay_invoice),
        ("/_emulator/checkout/sessions/{id}/complete", ["POST"], complete_checkout),
        ("/_emulator/faults", ["GET"], get_faults),
        ("/_emulator/faults", ["POST", "DELETE"], set_faults),
        ("/_emulator/webhook_endpoints", ["POST"], add_endpoint),
        ("/_emulator/webhook_endpoints", ["GET"], list_endpoints),
        ("/_emulator/webhook_endpoints/{id}", ["DELETE"], delete_endpoint),
        ("/_emulator/webhooks/options", ["POST"], webhook_options),
        ("/_emulator/webhook_deliveries", ["GET"], deliveries),
        ("/_emulator/meter_events", ["GET"], meter_events),
        ("/_emulator/requests", ["GET"], requests_log),
        ("/_emulator/events", ["GET"], all_events),
        ("/_emulator/meter_event_sessions/expire", ["POST"], expire_sessions),
    ]
    return [Route(path, _endpoint(emu, action), methods=methods) for path, methods, action in table]
