"""Pure parts of outbound webhooks: signing (the spec's vector), the schedule, URL checks, ids."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from meterline.errors import ValidationFailed
from meterline.notify import signing
from meterline.notify.dispatcher import _retry_after
from meterline.notify.events import Notification
from meterline.notify.schedule import RETRY_DELAYS_S, next_delay, total_span
from meterline.notify.settings import WebhookSettings
from meterline.notify.urls import check_url
from meterline_sdk.webhooks import verify

SPEC = ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
        b'{"test": 2432232314}')  # fmt: skip


def test_signing_matches_the_spec_vector():
    assert signing.sign(*SPEC) == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_new_secrets_are_32_random_bytes_and_both_verifiers_accept_rotation_headers():
    old, new = signing.new_secret(), signing.new_secret()
    assert old != new and old.startswith("whsec_") and len(old) == 6 + 44
    now = int(datetime.now(UTC).timestamp())
    headers = signing.headers([new, old], "msg_1", now, b'{"a": 1}')
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        assert Webhook(secret).verify(b'{"a": 1}', headers) == {"a": 1}
        assert verify(b'{"a": 1}', headers, secret) == {"a": 1}


def test_the_schedule_spans_more_than_three_days_in_ten_attempts():
    assert len(RETRY_DELAYS_S) + 1 == 10
    assert total_span() == 75 * 3600 + 35 * 60 + 5
    assert total_span() > 3 * 24 * 3600


@given(st.integers(1, len(RETRY_DELAYS_S)), st.floats(0, 1e6), st.integers(0, 2**32))
def test_jitter_only_adds_and_retry_after_is_a_floor(attempt, retry_after, seed):
    base = RETRY_DELAYS_S[attempt - 1]
    delay = next_delay(attempt, random.Random(seed))
    assert delay is not None and base <= delay <= base * 1.2
    with_after = next_delay(attempt, random.Random(seed), retry_after=retry_after)
    assert with_after is not None and with_after >= min(retry_after, 86400)
    assert with_after <= max(base * 1.2, 86400)


def test_no_delay_after_the_last_attempt():
    assert next_delay(len(RETRY_DELAYS_S) + 1, random.Random(0)) is None
    assert next_delay(0, random.Random(0)) is None


def test_retry_after_as_seconds_or_date():
    assert _retry_after("120") == 120
    assert _retry_after(None) is None and _retry_after("soon") is None
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0  # in the past


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com/x", "http://93.184.215.14:8080/", "https://[2606:4700::1]/"]
)
def test_public_urls_are_accepted(url):
    assert check_url(url, allow_private=False) == url


@pytest.mark.parametrize(
    "url", ["http://0.0.0.0/", "http://100.64.0.1/", "http://224.0.0.1/", "http://app.localhost/"]
)
def test_unroutable_addresses_are_refused(url):
    with pytest.raises(ValidationFailed):
        check_url(url, allow_private=False)
    assert check_url(url, allow_private=True) == url


def test_message_ids_are_stable_per_key_and_dot_free():
    at = datetime(2026, 12, 1, tzinfo=UTC)
    a = Notification(1, "subscription.changed", at, {}, "c", key="k")
    b = Notification(1, "subscription.changed", at, {"x": 1}, "c", key="k")
    c = Notification(2, "subscription.changed", at, {}, "c", key="k")
    assert a.msg_id == b.msg_id != c.msg_id and "." not in a.msg_id
    unkeyed = Notification(1, "subscription.changed", at, {})
    assert unkeyed.msg_id != unkeyed.msg_id and unkeyed.ordering_key == ""
    with pytest.raises(ValueError, match="unknown event type"):
        Notification(1, "nope", at, {})


def test_the_schedule_and_limits_from_the_environment():
    s = WebhookSettings.model_validate({"retry_delays_s": "1,2.5, 3"})
    assert s.retry_delays_s == (1.0, 2.5, 3.0)
    assert WebhookSettings.model_validate({"retry_delays_s": "[5]"}).retry_delays_s == (5.0,)
    for bad in ({"retry_delays_s": ""}, {"retry_delays_s": "1,-1"}, {"workers": "0"}):
        with pytest.raises(ValueError):
            WebhookSettings.model_validate(bad)
