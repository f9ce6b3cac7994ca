"""The dispatcher over real Postgres and a real HTTP receiver: signatures the official Standard
Webhooks library accepts, order per customer through an outage, retries, disabling, replay."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest
from standardwebhooks.webhooks import Webhook

from meterline.notify.postgres.deliveries import DeliveryLog
from meterline.notify.postgres.endpoints import EndpointChange
from meterline_sdk.webhooks import ReplayGuard, WebhookVerificationError, verify
from tests.notify.support import Received, Receiver, make_setup, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def setup(pg_conninfo):
    s = make_setup(pg_conninfo)
    yield s
    s.pool.close()


@pytest.fixture
def receiver():
    r = Receiver()
    r.start()
    yield r
    r.stop()


def test_every_delivery_verifies_with_the_published_algorithm(setup, receiver):
    _, secret = setup.endpoint(receiver.url)
    ids = [setup.publish(f"cust_{i % 3}", i) for i in range(9)]
    assert setup.dispatcher().drain() == 9
    events = receiver.verified(secret)
    assert sorted(r.msg_id for r in receiver.requests) == sorted(ids)
    assert {e["type"] for e in events} == {"subscription.changed"}
    first = receiver.requests[0]
    assert first.headers["content-type"] == "application/json"
    assert abs(int(first.headers["webhook-timestamp"]) - time.time()) < 30
    assert setup.statuses() == {"succeeded": 9}


def test_a_receiver_that_fails_for_a_while_gets_every_event_in_order_per_customer(setup):
    failing = {"until": time.time() + 1.0}

    def answer(_r: Received) -> tuple[int, dict[str, str]]:
        return (503, {}) if time.time() < failing["until"] else (200, {})

    receiver = Receiver(answer)
    url = receiver.start()
    try:
        _, secret = setup.endpoint(url)
        dispatcher = setup.dispatcher(retry_delays_s=(0.1,) * 30, workers=3)
        dispatcher.start()
        expected = defaultdict(list)
        for n in range(30):
            customer = f"cust_{n % 4}"
            expected[customer].append(n)
            setup.publish(customer, n)
        wait_until(lambda: setup.statuses() == {"succeeded": 30}, timeout=30)
        dispatcher.stop()
        per_customer = defaultdict(list)
        for event in _accepted(receiver, secret, failing["until"]):
            per_customer[f"cust_{event['data']['n'] % 4}"].append(event["data"]["n"])
        assert dict(per_customer) == dict(expected)
        assert len(receiver.requests) > 30  # the outage really failed some attempts
    finally:
        receiver.stop()


def _accepted(receiver: Receiver, secret: str, until: float) -> list[dict]:
    """The events of the requests answered 2xx (after the outage), in arrival order, each
    verified."""
    hook = Webhook(secret)
    return [hook.verify(r.body, r.headers) for r in receiver.requests if r.at >= until]


def test_a_failed_attempt_is_logged_and_retried_on_schedule_with_a_fresh_timestamp(setup):
    answers = iter([(500, {}), (429, {"retry-after": "0"}), (204, {})])
    receiver = Receiver(lambda _r: next(answers))
    url = receiver.start()
    try:
        endpoint_id, secret = setup.endpoint(url)
        msg_id = setup.publish("cust_0", 1)
        dispatcher = setup.dispatcher(retry_delays_s=(1.0, 0.0))
        assert dispatcher.drain() == 1  # the retry is not due yet
        time.sleep(1.3)
        assert dispatcher.drain() == 2
        stamps = [r.headers["webhook-timestamp"] for r in receiver.requests]
        assert [r.msg_id for r in receiver.requests] == [msg_id] * 3
        assert int(stamps[2]) > int(stamps[0])
        receiver.verified(secret)
        log = setup_log(setup).deliveries(setup.tenant_id, endpoint_id)
        assert log[0]["status"] == "succeeded" and log[0]["attempts"] == 3
        codes = [(a["status_code"], a["succeeded"]) for a in log[0]["attempt_log"]]
        assert codes == [(500, False), (429, False), (204, True)]
        assert all(a["latency_ms"] > 0 for a in log[0]["attempt_log"])
    finally:
        receiver.stop()


def setup_log(setup):
    return DeliveryLog(setup.pool)


def test_retries_end_after_the_schedule_and_replay_sends_again(setup):
    broken = {"cust_0-1"}
    receiver = Receiver(lambda r: (500 if r.event()["data"]["key"] in broken else 200, {}))
    url = receiver.start()
    try:
        endpoint_id, _ = setup.endpoint(url)
        msg_id = setup.publish("cust_0", 1)
        later = setup.publish("cust_0", 2)
        dispatcher = setup.dispatcher(retry_delays_s=(0.0, 0.0))
        dispatcher.drain()
        assert [r.msg_id for r in receiver.requests] == [msg_id] * 3 + [later]
        log = setup_log(setup)
        first = next(
            d for d in log.deliveries(setup.tenant_id, endpoint_id) if d["msg_id"] == msg_id
        )
        assert first["status"] == "failed" and first["attempts"] == 3
        broken.clear()
        log.replay(setup.tenant_id, endpoint_id, msg_id)
        assert dispatcher.drain() == 1
        assert receiver.requests[-1].msg_id == msg_id
        assert setup.statuses() == {"succeeded": 2}
        exhausted = {"outcome": "exhausted"}
        attempts = "meterline_reporter_webhook_attempts_total"
        assert setup.registry.get_sample_value(attempts, exhausted) == 1
    finally:
        receiver.stop()


def test_a_run_of_failures_disables_the_endpoint_and_counts_it(setup):
    receiver = Receiver(lambda _r: (500, {}))
    url = receiver.start()
    try:
        endpoint_id, _ = setup.endpoint(url)
        for n in range(5):
            setup.publish(f"cust_{n}", n)
        dispatcher = setup.dispatcher(disable_after_failures=3, disable_after_s=0)
        dispatcher.drain()
        endpoint = setup.endpoints.get(setup.tenant_id, endpoint_id)
        assert not endpoint.enabled and endpoint.disabled_reason == "3 failed attempts in a row"
        assert len(receiver.requests) == 3  # nothing is sent to a disabled endpoint
        disabled = "meterline_reporter_webhook_endpoints_disabled_total"
        assert setup.registry.get_sample_value(disabled) == 1
        setup.publish("cust_9", 9)  # still queued for it, sent once it is enabled again
        assert setup.statuses() == {"pending": 6}
        setup.endpoints.update(setup.tenant_id, endpoint_id, EndpointChange(enabled=True))
        assert setup.endpoints.get(setup.tenant_id, endpoint_id).failure_streak == 0
    finally:
        receiver.stop()


def test_the_failure_run_must_also_last_long_enough(setup):
    receiver = Receiver(lambda _r: (500, {}))
    url = receiver.start()
    try:
        endpoint_id, _ = setup.endpoint(url)
        for n in range(5):
            setup.publish(f"cust_{n}", n)
        setup.dispatcher(disable_after_failures=3, disable_after_s=3600).drain()
        endpoint = setup.endpoints.get(setup.tenant_id, endpoint_id)
        assert endpoint.enabled and endpoint.failure_streak >= 5
    finally:
        receiver.stop()


def test_410_gone_disables_at_once(setup):
    receiver = Receiver(lambda _r: (410, {}))
    url = receiver.start()
    try:
        endpoint_id, _ = setup.endpoint(url)
        setup.publish("cust_0", 1)
        setup.dispatcher().drain()
        endpoint = setup.endpoints.get(setup.tenant_id, endpoint_id)
        assert not endpoint.enabled and "410" in (endpoint.disabled_reason or "")
    finally:
        receiver.stop()


def test_during_a_rotation_both_secrets_sign(setup, receiver):
    endpoint_id, old = setup.endpoint(receiver.url)
    new = setup.endpoints.rotate(setup.tenant_id, endpoint_id, overlap_s=3600)
    setup.publish("cust_0", 1)
    setup.dispatcher().drain()
    signature = receiver.requests[0].headers["webhook-signature"]
    assert len(signature.split(" ")) == 2
    receiver.verified(old), receiver.verified(new)
    setup.endpoints.rotate(setup.tenant_id, endpoint_id, overlap_s=0)
    setup.publish("cust_0", 2)
    setup.dispatcher().drain()
    assert len(receiver.requests[1].headers["webhook-signature"].split(" ")) == 1


def test_event_type_filters_and_fan_out(setup, receiver):
    url = receiver.url
    all_types, _ = setup.endpoint(url)
    only_dlq, _ = setup.endpoint(url, ["dlq.event_dead_lettered"])
    setup.publish("cust_0", 1, "subscription.changed")
    setup.publish("cust_0", 2, "dlq.event_dead_lettered")
    setup.dispatcher().drain()
    log = setup_log(setup)
    assert len(log.deliveries(setup.tenant_id, all_types)) == 2
    assert [d["event_type"] for d in log.deliveries(setup.tenant_id, only_dlq)] == [
        "dlq.event_dead_lettered"
    ]
    assert len(receiver.requests) == 3


def test_the_same_event_written_twice_is_one_message(setup, receiver):
    setup.endpoint(receiver.url)
    setup.publish("cust_0", 1)
    setup.publish("cust_0", 1)
    assert setup.dispatcher().drain() == 1


def test_a_private_address_is_refused_at_send_time_unless_allowed(setup, receiver):
    endpoint_id, _ = setup.endpoint(receiver.url)
    setup.publish("cust_0", 1)
    setup.dispatcher(allow_private_urls=False).drain()
    assert receiver.requests == []
    attempt = setup_log(setup).deliveries(setup.tenant_id, endpoint_id)[0]["attempt_log"][0]
    assert attempt["error"].startswith("RefusedAddress") and not attempt["succeeded"]


def test_the_sdk_helper_accepts_real_deliveries_and_detects_forged_and_replayed_ones(
    setup, receiver
):
    _, secret = setup.endpoint(receiver.url)
    setup.publish("cust_0", 1)
    setup.dispatcher().drain()
    real = receiver.requests[0]
    guard = ReplayGuard()
    assert guard.verify(real.body, real.headers, secret)["data"]["n"] == 1
    with pytest.raises(WebhookVerificationError) as replayed:
        guard.verify(real.body, real.headers, secret)  # the same request sent again
    assert replayed.value.reason == "replayed"
    forged = real.body.replace(b'"n":1', b'"n":2')
    assert forged != real.body
    with pytest.raises(WebhookVerificationError) as bad:
        verify(forged, real.headers, secret)
    assert bad.value.reason == "bad_signature"
    later = int(real.headers["webhook-timestamp"]) + 301
    with pytest.raises(WebhookVerificationError) as old:
        verify(real.body, real.headers, secret, now=lambda: later)
    assert old.value.reason == "too_old"
