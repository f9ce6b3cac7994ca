"""`EmulatorControl`: a small synchronous client for the `/_emulator` control API."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

import httpx

JSON = dict[str, Any]


class EmulatorControlError(RuntimeError):
    """The control API answered an error; `status` and `body` say which."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"emulator control error {status}: {body}")
        self.status = status
        self.body = body


class EmulatorControl:
    """Drive an emulator at `url`: clock, billing periods, payments, faults, webhooks, and
    read back what it received. Every method raises `EmulatorControlError` on a non-2xx."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url + "/_emulator", timeout=timeout)

    def close(self) -> None:
        """Close the HTTP client."""
        self._http.close()

    def __enter__(self) -> EmulatorControl:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, verb: str, route: str, body: JSON | None = None, /, **query: Any) -> Any:
        params = {k: v for k, v in query.items() if v is not None}
        response = self._http.request(verb, route, json=body, params=params)
        data = response.json()
        if response.status_code >= 400:
            raise EmulatorControlError(response.status_code, data)
        return data

    def health(self) -> JSON:
        """Liveness and the emulator time."""
        return dict(self._call("GET", "/health"))

    def reset(self) -> None:
        """Forget all state, faults, webhook endpoints and the clock offset."""
        self._call("POST", "/reset")

    def now(self) -> float:
        """Emulator time (Unix seconds)."""
        return float(self._call("GET", "/clock")["now"])

    def advance_clock(self, seconds: float, close_due_periods: bool = False) -> JSON:
        """Move the clock forward; optionally close every period that has ended."""
        body = {"seconds": seconds, "close_due_periods": close_due_periods}
        return dict(self._call("POST", "/clock/advance", body))

    def close_period(
        self, subscription: str, payment: str = "succeed", finalize: bool = True
    ) -> JSON:
        """Invoice the subscription's current period and start the next; returns the invoice."""
        body = {"payment": payment, "finalize": finalize}
        return dict(self._call("POST", f"/subscriptions/{subscription}/close_period", body))

    def fail_payment(self, subscription: str, final: bool = False, unpaid_after: int = 2) -> JSON:
        """Fail a payment: past_due first, unpaid after `unpaid_after` attempts or `final`."""
        body = {"final": final, "unpaid_after": unpaid_after}
        return dict(self._call("POST", f"/subscriptions/{subscription}/fail_payment", body))

    def finalize_invoice(self, invoice: str, payment: str = "succeed") -> JSON:
        """Finalize a draft invoice and attempt payment."""
        return dict(self._call("POST", f"/invoices/{invoice}/finalize", {"payment": payment}))

    def pay_invoice(self, invoice: str) -> JSON:
        """Pay an open invoice (the subscription becomes active)."""
        return dict(self._call("POST", f"/invoices/{invoice}/pay"))

    def complete_checkout(
        self, session: str, email: str | None = None, payment_method: str = "pm_card_visa"
    ) -> JSON:
        """The customer completes Checkout Session `session` with a test card."""
        body: JSON = {"payment_method": payment_method}
        if email is not None:
            body["email"] = email
        return dict(self._call("POST", f"/checkout/sessions/{session}/complete", body))

    def set_faults(self, **settings: Any) -> JSON:
        """Replace fault settings: seed, rate_429, rate_500, rate_500_after, latency_ms,
        drop_meter_events, paths."""
        return dict(self._call("POST", "/faults", settings))

    def clear_faults(self) -> None:
        """No more faults."""
        self._call("DELETE", "/faults")

    def faults(self) -> JSON:
        """Current settings and the list of injected faults."""
        return dict(self._call("GET", "/faults"))

    def add_webhook_endpoint(
        self,
        url: str,
        secret: str | None = None,
        enabled_events: list[str] | None = None,
        extra_secrets: list[str] | None = None,
    ) -> JSON:
        """Register an endpoint; the answer carries its `secret`."""
        body = {
            "url": url,
            "secret": secret,
            "enabled_events": enabled_events,
            "extra_secrets": extra_secrets,
        }
        return dict(self._call("POST", "/webhook_endpoints", body))

    def webhook_options(self, **options: Any) -> JSON:
        """Change delivery options (out_of_order_jitter_seconds, duplicate_rate, max_attempts,
        retry_base_seconds, retry_max_seconds, timeout_seconds)."""
        return dict(self._call("POST", "/webhooks/options", options))

    def deliveries(self, **filters: Any) -> list[JSON]:
        """Delivery attempts (filters: event_id, endpoint_id, event_type)."""
        return list(self._call("GET", "/webhook_deliveries", **filters)["data"])

    def wait_for_deliveries(self, timeout: float = 10.0) -> list[JSON]:
        """Block until no delivery is pending (retries included); returns all attempts."""
        deadline = time.monotonic() + timeout
        while True:
            answer = self._call("GET", "/webhook_deliveries")
            if answer["pending"] == 0:
                return list(answer["data"])
            if time.monotonic() > deadline:
                raise TimeoutError(f"{answer['pending']} webhook deliveries still pending")
            time.sleep(0.02)

    def meter_events(self, **filters: Any) -> list[JSON]:
        """Received meter events with their fate (filters: event_name, customer, status,
        identifier, source)."""
        return list(self._call("GET", "/meter_events", **filters)["data"])

    def requests(self, **filters: Any) -> list[JSON]:
        """The request log (filters: method, path, status)."""
        return list(self._call("GET", "/requests", **filters)["data"])

    def events(self, type: str | None = None) -> list[JSON]:
        """Every emitted event, oldest first."""
        return list(self._call("GET", "/events", type=type)["data"])

    def expire_sessions(self) -> int:
        """Expire every v2 meter event session token now."""
        return int(self._call("POST", "/meter_event_sessions/expire")["expired"])
