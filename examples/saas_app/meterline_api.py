"""Meterline as the app reaches it: the SDK for consumes, the billing API and usage series over
HTTP (the SDK covers usage and entitlements, not billing). Every call answers parsed JSON or
raises `MeterlineRefused` with the status and Meterline's own message, which the pages show."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from meterline_sdk import Entitlement, Entitlements

JSON = dict[str, Any]


class MeterlineRefused(Exception):
    """Meterline answered an error: `status` and the `message` to show."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class Meterline:
    """One tenant's Meterline, with a key holding `billing`, `read` and `ingest`."""

    def __init__(self, url: str, api_key: str, timeout: float = 15.0) -> None:
        self._http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout
        )
        self.entitlements = Entitlements(url, api_key, timeout=timeout)

    def close(self) -> None:
        self._http.close()
        self.entitlements.close()

    def catalog(self) -> JSON:
        """The plans, credit packs and features (`GET /v1/plans`)."""
        return self._call("GET", "/v1/plans")

    def overview(self, customer: str) -> JSON | None:
        """The billing dashboard's data; None for a customer Meterline has not seen yet."""
        try:
            return self._call("GET", f"/v1/customers/{customer}/billing")
        except MeterlineRefused as refused:
            if refused.status == 404:
                return None
            raise

    def decisions(self, customer: str) -> list[JSON]:
        """Every feature's decision (works for any customer id: the default plan applies)."""
        return list(self._call("GET", f"/v1/customers/{customer}/entitlements")["entitlements"])

    def checkout(self, customer: str, plan: str, success_url: str, cancel_url: str) -> str:
        """The Stripe Checkout URL to send the user to."""
        body = {"plan": plan, "success_url": success_url, "cancel_url": cancel_url}
        return str(self._call("POST", f"/v1/customers/{customer}/checkout", body)["url"])

    def preview(self, customer: str, plan: str) -> JSON:
        return self._call("POST", f"/v1/customers/{customer}/plan/preview", {"plan": plan})

    def change(self, customer: str, plan: str, proration_date: int) -> JSON:
        body = {"plan": plan, "proration_date": proration_date}
        return self._call("POST", f"/v1/customers/{customer}/plan", body)

    def cancel(self, customer: str, resume: bool = False) -> JSON:
        verb = "resume" if resume else "cancel"
        return self._call("POST", f"/v1/customers/{customer}/subscription/{verb}")

    def consume(self, customer: str, feature: str, amount: int) -> Entitlement:
        """Check and record `amount` at once (the SDK; a refusal is a decision, not an error)."""
        return self.entitlements.consume(customer, feature, amount, f"use-{uuid.uuid4()}")

    def usage(self, customer: str, meter: str, minutes: int = 60) -> list[JSON]:
        """The last `minutes` of a meter's usage, a point per minute (from Meterline's rollups)."""
        end = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        start = end - timedelta(minutes=minutes)
        params = {
            "customer": customer,
            "meter": meter,
            "from": start.isoformat(),
            "to": end.isoformat(),
            "window": "minute",
        }
        return list(self._call("GET", "/v1/usage", params=params)["series"])

    def _call(
        self, verb: str, path: str, body: JSON | None = None, params: JSON | None = None
    ) -> JSON:
        try:
            answer = self._http.request(verb, path, json=body, params=params)
        except httpx.TransportError as exc:
            raise MeterlineRefused(503, f"Meterline cannot be reached ({exc})") from exc
        if answer.status_code >= 400:
            raise MeterlineRefused(answer.status_code, _message(answer))
        return dict(answer.json())


def _message(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:200]
    errors = body.get("errors") if isinstance(body, dict) else None
    if errors:
        return "; ".join(f"{e.get('field')}: {e.get('message')}" for e in errors)
    return str(body.get("message") or body.get("error") or body) if isinstance(body, dict) else ""
