"""The reporter service as deployed: its admin API creates an endpoint and its own dispatcher
delivers what the outbox holds, then drains on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from meterline.tenants import PostgresTenantRepository
from meterline_devstack.process import free_port
from tests.notify.support import Receiver, make_setup, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def test_the_reporter_serves_the_api_and_runs_the_dispatcher(pg_conninfo, tmp_path):
    setup = make_setup(pg_conninfo)
    key = PostgresTenantRepository(setup.pool).create_key("acme", ["admin"])[1]
    receiver = Receiver()
    receiver.start()
    port = free_port()
    env = {
        **os.environ, "PYTHONPATH": str(ROOT), "METERLINE_HOME": str(tmp_path),
        "METERLINE_DATABASE_URL": pg_conninfo, "METERLINE_REPORTER_PORT": str(port),
        "METERLINE_REPORTER_SCHEDULER_ENABLED": "false",
        "METERLINE_STRIPE_API_BASE": "http://127.0.0.1:9",
        "METERLINE_WEBHOOK_ALLOW_PRIVATE_URLS": "true", "METERLINE_WEBHOOK_POLL_S": "0.05",
    }  # fmt: skip
    process = subprocess.Popen([sys.executable, "-m", "reporter"], env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _up(base), timeout=30)
        auth = {"Authorization": f"Bearer {key}"}
        made = httpx.post(f"{base}/v1/webhooks/endpoints", json={"url": receiver.url}, headers=auth)
        assert made.status_code == 201, made.text
        msg_id = setup.publish("cust_0", 1)
        wait_until(lambda: len(receiver.requests) == 1, timeout=15)
        assert receiver.requests[0].msg_id == msg_id
        receiver.verified(made.json()["secret"])
        metrics = httpx.get(f"{base}/metrics").text
        assert 'meterline_reporter_webhook_attempts_total{outcome="succeeded"} 1.0' in metrics
        assert "meterline_reporter_webhook_endpoints_auto_disabled 0.0" in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        # uvicorn re-raises the SIGTERM it handled once it has drained
        assert process.wait(30) in (0, -signal.SIGTERM)
        receiver.stop()
        setup.pool.close()


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
