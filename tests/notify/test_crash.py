"""SIGKILL of the sending process mid-delivery loses no message (a real `reporter.dispatch`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from tests.notify.support import Receiver, make_setup, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
# The default suite kills the dispatcher 3 times; `make reliability` sets a larger number.
KILLS = int(os.environ.get("METERLINE_RELIABILITY_WEBHOOK_KILLS", "3"))


def _dispatcher(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "reporter.dispatch"], env=env, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def test_sigkill_mid_delivery_loses_nothing(pg_conninfo, tmp_path):
    setup = make_setup(pg_conninfo)
    receiver = Receiver(delay=0.3)  # each request is in flight for 0.3 s
    receiver.start()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "METERLINE_HOME": str(tmp_path),
        "METERLINE_DATABASE_URL": pg_conninfo,
        "METERLINE_WEBHOOK_ALLOW_PRIVATE_URLS": "true",
        "METERLINE_WEBHOOK_POLL_S": "0.05",
        "METERLINE_WEBHOOK_WORKERS": "2",
        "METERLINE_WEBHOOK_RETRY_DELAYS_S": "[0.1, 0.1, 0.1]",
    }
    try:
        _, secret = setup.endpoint(receiver.url)
        total = 4 * KILLS
        ids = [setup.publish(f"cust_{n % 3}", n) for n in range(total)]
        kills = 0
        while kills < KILLS:
            process = _dispatcher(env)
            receiver.arrived.clear()
            assert receiver.arrived.wait(30), process.stderr
            process.send_signal(signal.SIGKILL)  # while the receiver still holds the request
            assert process.wait(10) == -signal.SIGKILL
            kills += 1
        in_flight = receiver.requests[-1].msg_id
        process = _dispatcher(env)
        wait_until(lambda: setup.statuses() == {"succeeded": total}, timeout=60)
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
        events = receiver.verified(secret)
        assert {r.msg_id for r in receiver.requests} == set(ids)
        assert [r.msg_id for r in receiver.requests].count(in_flight) >= 2  # sent again
        firsts: dict[str, list[int]] = defaultdict(list)
        seen: set[str] = set()
        for request, event in zip(receiver.requests, events, strict=True):
            if request.msg_id not in seen:
                seen.add(request.msg_id)
                firsts[f"cust_{event['data']['n'] % 3}"].append(event["data"]["n"])
        assert all(ns == sorted(ns) for ns in firsts.values()), firsts
    finally:
        receiver.stop()
        setup.pool.close()
