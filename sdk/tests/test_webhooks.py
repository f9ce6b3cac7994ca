"""The webhook verification helper: the spec's test vector, forgeries, replays, rotation."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from meterline_sdk.webhooks import ReplayGuard, WebhookVerificationError, verify

# Standard Webhooks' published vector (libraries/python/tests/test_webhooks.py::test_sign_function)
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
OTHER_SECRET = "whsec_" + base64.b64encode(b"another secret of 24+ bytes!").decode()


def sign(secret: str, msg_id: str, ts: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(sig: str, msg_id: str = SPEC_ID, ts: int = SPEC_TS) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sig}


def at(ts: float):
    return lambda: ts


def test_the_spec_vector_verifies():
    assert verify(SPEC_BODY, headers(SPEC_SIGNATURE), SPEC_SECRET, now=at(SPEC_TS)) == {
        "test": 2432232314
    }


def test_header_names_are_case_insensitive_and_str_bodies_work():
    h = {k.title(): v for k, v in headers(SPEC_SIGNATURE).items()}
    assert verify(SPEC_BODY.decode(), h, SPEC_SECRET, now=at(SPEC_TS + 10))


@pytest.mark.parametrize(
    ("body", "hdrs", "secret"),
    [
        (b'{"test": 2432232315}', headers(SPEC_SIGNATURE), SPEC_SECRET),  # body changed
        (SPEC_BODY, headers(SPEC_SIGNATURE, msg_id="msg_other"), SPEC_SECRET),  # id changed
        (SPEC_BODY, headers(SPEC_SIGNATURE), OTHER_SECRET),  # signed with another secret
        (SPEC_BODY, headers("v1a," + SPEC_SIGNATURE[3:]), SPEC_SECRET),  # not a v1 signature
        (SPEC_BODY, headers("v1,AAAA"), SPEC_SECRET),
    ],
    ids=["body", "id", "secret", "version", "garbage"],
)
def test_a_forged_delivery_is_refused(body, hdrs, secret):
    with pytest.raises(WebhookVerificationError) as err:
        verify(body, hdrs, secret, now=at(SPEC_TS))
    assert err.value.reason == "bad_signature"


def test_a_shifted_timestamp_breaks_the_signature():
    with pytest.raises(WebhookVerificationError) as err:
        verify(SPEC_BODY, headers(SPEC_SIGNATURE, ts=SPEC_TS + 1), SPEC_SECRET, now=at(SPEC_TS))
    assert err.value.reason == "bad_signature"


@pytest.mark.parametrize(("offset", "reason"), [(-301, "too_old"), (301, "too_new")])
def test_a_timestamp_outside_the_tolerance_is_refused(offset, reason):
    with pytest.raises(WebhookVerificationError) as err:
        verify(SPEC_BODY, headers(SPEC_SIGNATURE), SPEC_SECRET, now=at(SPEC_TS - offset))
    assert err.value.reason == reason


def test_the_tolerance_is_the_callers():
    late = at(SPEC_TS + 3600)
    assert verify(SPEC_BODY, headers(SPEC_SIGNATURE), SPEC_SECRET, tolerance=3601, now=late)


def test_missing_headers_and_bad_timestamps():
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        h = headers(SPEC_SIGNATURE)
        del h[name]
        with pytest.raises(WebhookVerificationError, match="missing") as err:
            verify(SPEC_BODY, h, SPEC_SECRET, now=at(SPEC_TS))
        assert err.value.reason == "missing_headers"
    h = {**headers(SPEC_SIGNATURE), "webhook-timestamp": "soon"}
    with pytest.raises(WebhookVerificationError) as err:
        verify(SPEC_BODY, h, SPEC_SECRET, now=at(SPEC_TS))
    assert err.value.reason == "bad_timestamp"


def test_during_a_rotation_either_secret_verifies_either_signature():
    both = SPEC_SIGNATURE + " " + sign(OTHER_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY)
    for secret in (SPEC_SECRET, OTHER_SECRET, [OTHER_SECRET, SPEC_SECRET]):
        assert verify(SPEC_BODY, headers(both), secret, now=at(SPEC_TS))
    only_old = headers(SPEC_SIGNATURE)
    assert verify(SPEC_BODY, only_old, [OTHER_SECRET, SPEC_SECRET], now=at(SPEC_TS))


def test_a_malformed_secret_is_reported():
    with pytest.raises(WebhookVerificationError) as err:
        verify(SPEC_BODY, headers(SPEC_SIGNATURE), "whsec_not base64!", now=at(SPEC_TS))
    assert err.value.reason == "bad_secret"


def test_the_replay_guard_refuses_a_captured_request_but_not_a_retry():
    guard = ReplayGuard(now=at(SPEC_TS))
    assert guard.verify(SPEC_BODY, headers(SPEC_SIGNATURE), SPEC_SECRET)
    with pytest.raises(WebhookVerificationError) as err:
        guard.verify(SPEC_BODY, headers(SPEC_SIGNATURE), SPEC_SECRET)
    assert err.value.reason == "replayed"
    retry = headers(sign(SPEC_SECRET, SPEC_ID, SPEC_TS + 5, SPEC_BODY), ts=SPEC_TS + 5)
    assert guard.verify(SPEC_BODY, retry, SPEC_SECRET)
