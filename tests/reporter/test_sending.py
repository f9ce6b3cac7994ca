"""Retries, rate limiting and the in-memory sender (no network)."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from meterline.stripe.meter_events import (
    Delivery,
    MemoryMeterEventSender,
    MeterEvent,
    SendResult,
    TransientStripeError,
    format_value,
    idempotency_key,
)
from meterline.stripe.ratelimit import TokenBucket
from meterline.stripe.sending import RetryingSender
from reporter.notify import message


def _events(n, ts=1_800_000_000):
    return [MeterEvent("ev", "cus_1", Decimal(i + 1), ts, f"id-{i}") for i in range(n)]


class Flaky(MemoryMeterEventSender):
    """Settles two events per call, then fails; records the attempts it was given."""

    def __init__(self):
        super().__init__(now=lambda: 1_800_000_000)
        self.attempts: list[int] = []

    def send(self, events, attempt=0):
        self.attempts.append(attempt)
        done = [self._one(e) for e in events[:2]]
        if len(events) > 2:
            raise TransientStripeError("429", done, retry_after=0.5)
        return done


def test_retries_resend_only_unsettled_events_with_new_attempts_honouring_retry_after():
    flaky, sleeps = Flaky(), []
    sender = RetryingSender(
        flaky, max_attempts=5, base_delay=0.01, sleep=sleeps.append, rng=random.Random(1)
    )
    results = sender.send(_events(5))
    assert [r.identifier for r in results] == [f"id-{i}" for i in range(5)]
    assert all(r.delivery is Delivery.DELIVERED for r in results)
    assert flaky.attempts == [0, 1, 2] and all(s >= 0.5 for s in sleeps)


def test_retries_give_up_with_what_was_settled():
    inner = MemoryMeterEventSender(fail_next=10)
    sender = RetryingSender(inner, max_attempts=3, sleep=lambda s: None)
    with pytest.raises(TransientStripeError) as caught:
        sender.send(_events(2))
    assert caught.value.done == [] and inner.calls == 3


def test_backoff_has_jitter_under_an_exponential_ceiling():
    sender = RetryingSender(
        MemoryMeterEventSender(), base_delay=1, max_delay=8, rng=random.Random(3)
    )
    delays = [sender.delay(n, None) for n in range(8)]
    assert all(0 <= d <= min(8, 2**n) for n, d in enumerate(delays))
    assert len(set(delays)) == len(delays)


def test_memory_sender_dedupes_identifiers_and_rejects_old_events():
    sender = MemoryMeterEventSender(now=lambda: 1_800_000_000)
    first = sender.send(_events(1))
    again = sender.send(_events(1))
    old = sender.send(_events(1, ts=1_800_000_000 - 36 * 86_400)[:1])
    assert [first[0].delivery, again[0].delivery] == [Delivery.DELIVERED, Delivery.DUPLICATE]
    assert again[0].landed and old == [SendResult("id-0", Delivery.DUPLICATE)]
    assert sender.totals() == {("cus_1", "ev"): Decimal(1)}


def test_token_bucket_waits_for_tokens():
    now = [0.0]
    waited: list[float] = []

    def sleep(s):
        waited.append(s)
        now[0] += s

    bucket = TokenBucket(10, burst=2, clock=lambda: now[0], sleep=sleep)
    for _ in range(4):
        bucket.acquire()
    assert sum(waited) == pytest.approx(0.2)


def test_values_and_keys_are_stable_strings():
    assert format_value(Decimal("12.500")) == "12.5" and format_value(Decimal("1E+3")) == "1000"
    assert idempotency_key(["a"], 0) == "ml:a:0" != idempotency_key(["a"], 1)
    assert len(idempotency_key([f"id-{i}" for i in range(100)], 3)) <= 255


def test_slack_message_sums_money_at_risk():
    from datetime import UTC, datetime

    from reporter.alerts import Alert

    now = datetime(2026, 11, 21, tzinfo=UTC)
    alert = Alert(1, 1, 1, "missing_in_stripe", "c", "m", now, now, Decimal(10), Decimal(10),
                  Decimal(0), Decimal(-10), Decimal("50"), "usd", Decimal(500), "open", None,
                  None, now, now)  # fmt: skip
    text = message(3, [alert], "http://r")["text"]
    assert "1 new alert(s), 5.00 USD at risk" in text and "http://r/finance" in text
