"""Sending meter events to Stripe Billing Meters: the interface, the Stripe and in-memory senders.

A `MeterEventSender` takes a batch of `MeterEvent`s and answers one `SendResult` per event:
`delivered`, `duplicate` (Stripe already holds that identifier — i.e. an earlier send landed,
so the event counts as delivered) or `rejected` (Stripe refused it for good, e.g. a timestamp
outside its window). A transient failure (429, 5xx, network) raises `TransientStripeError`
carrying the results of the events that were settled before it, so a retrying wrapper
(`meterline.stripe.sending.RetryingSender`) resends only the rest.

The Stripe sender uses v1 `POST /v1/billing/meter_events` (synchronous validation, one request
per event) for small batches and the v2 meter event stream (100 events per request, a session
token refreshed when it expires) when a batch reaches `stream_threshold`. Every request carries
an `Idempotency-Key` derived from the identifiers and the attempt number: the first attempt
after a crash replays the answer Stripe saved, and later attempts use a fresh key so a saved
500 cannot be replayed forever — the identifier is what prevents double counting.
"""

from __future__ import annotations

import abc
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import TypeVar

import stripe

from meterline.stripe.ratelimit import RateLimiter, Unlimited

STREAM_BATCH = 100
STRIPE_PAST_WINDOW_S = 35 * 86_400
# Stripe dedupes identifiers for about 24 h and cancels an event within 24 h of its receipt;
# Meterline acts on either only within 23 h, an hour's margin for clocks and slow answers.
STRIPE_DEDUPE_HORIZON = timedelta(hours=23)
STRIPE_SIGNIFICANT_DIGITS = 15
DUPLICATE_MESSAGE = "already exists with identifier"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class MeterEvent:
    """One meter event: `value` in the meter's units, `timestamp` in Unix seconds."""

    event_name: str
    stripe_customer_id: str
    value: Decimal
    timestamp: int
    identifier: str

    def payload(self) -> dict[str, str]:
        value = format_value(quantize(self.value))
        return {"stripe_customer_id": self.stripe_customer_id, "value": value}


class Delivery(StrEnum):
    DELIVERED = "delivered"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class SendResult:
    identifier: str
    delivery: Delivery
    error: str | None = None

    @property
    def landed(self) -> bool:
        """True when Stripe holds the event (sent now or before)."""
        return self.delivery is not Delivery.REJECTED


class TransientStripeError(Exception):
    """Stripe could not take the request now; `done` lists events settled before the failure."""

    def __init__(
        self, message: str, done: Sequence[SendResult] = (), retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.done = list(done)
        self.retry_after = retry_after


class PermanentStripeError(Exception):
    """Stripe refused a request for good (bad parameters, expired adjustment window, ...)."""


def quantize(value: Decimal) -> Decimal:
    """`value` rounded to Stripe's 15 significant digits, half to even; exact when it fits.

    Stripe rejects (v1) or silently invalidates (v2 stream) a value with more digits. Half to
    even, not half up: the error of each event is at most half a unit in its 15th digit either
    way, and it does not lean upwards over the many slots of an invoice. Callers record the
    quantized value as what was sent, so the next correction of a sum slot carries the residue
    and the error never accumulates.
    """
    if not value.is_finite() or value.is_zero():
        return value
    if len(value.normalize().as_tuple().digits) <= STRIPE_SIGNIFICANT_DIGITS:
        return value
    exponent = value.adjusted() - STRIPE_SIGNIFICANT_DIGITS + 1
    return value.quantize(Decimal(1).scaleb(exponent), rounding=ROUND_HALF_EVEN)


def quantum(*values: Decimal) -> Decimal:
    """How far two figures may differ and still be the same under the 15-digit rule: one unit
    in the 15th significant digit of the largest of `values` (twice `quantize`'s worst error,
    which also covers a float `aggregated_value`, exact to about 16 digits)."""
    largest = max((abs(v) for v in values if v.is_finite() and not v.is_zero()), default=None)
    if largest is None:
        return Decimal(0)
    return Decimal(1).scaleb(largest.adjusted() - STRIPE_SIGNIFICANT_DIGITS + 1)


def same_under_quantum(a: Decimal, b: Decimal) -> bool:
    """True when `a` and `b` differ by no more than `quantum(a, b)`."""
    return a == b or abs(a - b) <= quantum(a, b)


def format_value(value: Decimal) -> str:
    """A plain decimal string without exponent or trailing zeros (`"12"`, `"0.5"`)."""
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


class MeterEventSender(abc.ABC):
    """Sends meter events; see the module docstring for the result and error contract."""

    @abc.abstractmethod
    def send(self, events: Sequence[MeterEvent], attempt: int = 0) -> list[SendResult]:
        """One result per event, in order. Raises TransientStripeError (retry the rest)."""

    @abc.abstractmethod
    def cancel(self, event_name: str, identifier: str) -> None:
        """Cancel a sent event (Stripe allows it within 24 h of receipt).

        Raises PermanentStripeError when Stripe refuses, TransientStripeError to retry.
        """


class StripeMeterEventSender(MeterEventSender):
    """The real sender. `on_request(kind, seconds)` observes each Stripe call's latency."""

    def __init__(
        self,
        client: stripe.StripeClient,
        stream_threshold: int = 200,
        v1_limiter: RateLimiter | None = None,
        stream_limiter: RateLimiter | None = None,
        on_request: Callable[[str, float], None] | None = None,
    ) -> None:
        self._client = client
        self._threshold = stream_threshold
        self._v1_limiter = v1_limiter or Unlimited()
        self._stream_limiter = stream_limiter or Unlimited()
        self._on_request = on_request or (lambda kind, seconds: None)
        self._session: tuple[str, float] | None = None

    def send(self, events: Sequence[MeterEvent], attempt: int = 0) -> list[SendResult]:
        if len(events) >= self._threshold:
            return self._send_stream(events, attempt)
        done: list[SendResult] = []
        for event in events:
            try:
                done.append(self._send_v1(event, attempt))
            except TransientStripeError as exc:
                raise TransientStripeError(str(exc), done, exc.retry_after) from None
        return done

    def cancel(self, event_name: str, identifier: str) -> None:
        params: dict[str, object] = {
            "event_name": event_name,
            "type": "cancel",
            "cancel": {"identifier": identifier},
        }
        with _classified("cancel"):
            self._timed(
                "cancel",
                lambda: self._client.v1.billing.meter_event_adjustments.create(
                    params,  # type: ignore[arg-type]
                    options={"idempotency_key": f"ml-cancel:{identifier}"},
                ),
            )

    def _send_v1(self, event: MeterEvent, attempt: int) -> SendResult:
        params = {
            "event_name": event.event_name,
            "identifier": event.identifier,
            "timestamp": event.timestamp,
            "payload": event.payload(),
        }
        self._v1_limiter.acquire()
        try:
            self._timed(
                "meter_event",
                lambda: self._client.v1.billing.meter_events.create(
                    params,  # type: ignore[arg-type]
                    options={"idempotency_key": idempotency_key([event.identifier], attempt)},
                ),
            )
        except stripe.InvalidRequestError as exc:
            message = exc.user_message or str(exc)
            if DUPLICATE_MESSAGE in message:
                return SendResult(event.identifier, Delivery.DUPLICATE)
            return SendResult(event.identifier, Delivery.REJECTED, message)
        except stripe.IdempotencyError as exc:
            return SendResult(event.identifier, Delivery.REJECTED, str(exc))
        except stripe.StripeError as exc:
            raise _transient(exc) from None
        return SendResult(event.identifier, Delivery.DELIVERED)

    def _send_stream(self, events: Sequence[MeterEvent], attempt: int) -> list[SendResult]:
        done: list[SendResult] = []
        for start in range(0, len(events), STREAM_BATCH):
            chunk = events[start : start + STREAM_BATCH]
            try:
                self._stream_chunk(chunk, attempt)
            except TransientStripeError as exc:
                raise TransientStripeError(str(exc), done, exc.retry_after) from None
            done.extend(SendResult(e.identifier, Delivery.DELIVERED) for e in chunk)
        return done

    def _stream_chunk(self, chunk: Sequence[MeterEvent], attempt: int) -> None:
        body = {"events": [_v2_event(e) for e in chunk]}
        for _ in range(2):
            token = self._token()
            self._stream_limiter.acquire()
            try:
                self._timed(
                    "meter_event_stream",
                    lambda t=token: self._client.v2.billing.meter_event_stream.create(  # type: ignore[misc]
                        body,  # type: ignore[arg-type]
                        options={"api_key": t},
                    ),
                )
                return
            except stripe.TemporarySessionExpiredError:
                self._session = None
            except stripe.StripeError as exc:
                raise _transient(exc) from None
        raise TransientStripeError("meter event session expired twice in a row")

    def _token(self) -> str:
        if self._session is None or self._session[1] <= time.time() + 30:
            with _classified("meter_event_session"):
                sessions = self._client.v2.billing.meter_event_session
                session = self._timed("meter_event_session", lambda: sessions.create())
            expires = datetime.fromisoformat(str(session.expires_at).replace("Z", "+00:00"))
            self._session = (session.authentication_token, expires.timestamp())
        return self._session[0]

    def _timed(self, kind: str, call: Callable[[], T]) -> T:
        start = time.perf_counter()
        try:
            return call()
        finally:
            self._on_request(kind, time.perf_counter() - start)


def idempotency_key(identifiers: Sequence[str], attempt: int) -> str:
    """Deterministic per (events, attempt): a resend after a crash replays Stripe's answer."""
    if len(identifiers) == 1:
        return f"ml:{identifiers[0]}:{attempt}"
    digest = hashlib.sha256("\n".join(identifiers).encode()).hexdigest()[:40]
    return f"ml-stream:{digest}:{attempt}"


def _v2_event(event: MeterEvent) -> dict[str, object]:
    when = datetime.fromtimestamp(event.timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return {
        "event_name": event.event_name,
        "identifier": event.identifier,
        "payload": event.payload(),
        "timestamp": when,
    }


def _transient(exc: stripe.StripeError) -> Exception:
    status = exc.http_status or 0
    retryable = isinstance(exc, stripe.RateLimitError | stripe.APIConnectionError) or status >= 500
    retryable = retryable or status == 409
    if not retryable:
        return PermanentStripeError(f"Stripe refused the request ({status}): {exc.user_message}")
    return TransientStripeError(
        f"Stripe answered {status or 'no response'}: {exc.user_message or exc}",
        retry_after=_retry_after(exc),
    )


def _retry_after(exc: stripe.StripeError) -> float | None:
    raw = (exc.headers or {}).get("retry-after") or (exc.headers or {}).get("Retry-After")
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


class _classified:
    """Context manager turning Stripe errors into Transient/PermanentStripeError."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, stripe.InvalidRequestError | stripe.IdempotencyError):
            raise PermanentStripeError(f"{self._what}: {exc.user_message or exc}") from None
        if isinstance(exc, stripe.StripeError):
            raise _transient(exc) from None


@dataclass
class MemoryMeterEventSender(MeterEventSender):
    """Stripe's identifier dedupe and window check in memory, for unit tests.

    `fail_next` transient failures are raised before any event is taken; `received` holds
    every accepted event by identifier, `canceled` the canceled identifiers.
    """

    now: Callable[[], float] = time.time
    received: dict[str, MeterEvent] = field(default_factory=dict)
    canceled: set[str] = field(default_factory=set)
    fail_next: int = 0
    calls: int = 0

    def send(self, events: Sequence[MeterEvent], attempt: int = 0) -> list[SendResult]:
        self.calls += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            raise TransientStripeError("injected failure")
        return [self._one(e) for e in events]

    def _one(self, event: MeterEvent) -> SendResult:
        if event.identifier in self.received:
            return SendResult(event.identifier, Delivery.DUPLICATE)
        if event.timestamp < self.now() - STRIPE_PAST_WINDOW_S:
            return SendResult(event.identifier, Delivery.REJECTED, "timestamp_too_far_in_past")
        self.received[event.identifier] = event
        return SendResult(event.identifier, Delivery.DELIVERED)

    def cancel(self, event_name: str, identifier: str) -> None:
        if identifier not in self.received:
            raise PermanentStripeError(f"no meter event with identifier {identifier}")
        self.canceled.add(identifier)

    def totals(self) -> dict[tuple[str, str], Decimal]:
        """Sum of live values per (stripe customer, event name)."""
        out: dict[tuple[str, str], Decimal] = {}
        for ident, e in self.received.items():
            if ident not in self.canceled:
                key = (e.stripe_customer_id, e.event_name)
                out[key] = out.get(key, Decimal(0)) + e.value
        return out
