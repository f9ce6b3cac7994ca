"""The SDK against a real ingest process that is SIGKILLed mid-stream: no event is lost."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx

from meterline_sdk import Meterline
from tests.fixtures.services import Topics
from tests.ingest.support import ingest_process, read_topic, seed


def test_sigkill_of_ingest_loses_nothing_while_the_sdk_retries(
    service_env: dict[str, str],
    pg_conninfo: str,
    kafka_bootstrap: str,
    kafka_topics: Topics,
    tmp_path: Path,
) -> None:
    keys = seed(pg_conninfo)
    proc, url = ingest_process(service_env, tmp_path)
    proc.start()
    client = Meterline(
        url,
        keys.acme_ingest,
        batch_size=50,
        flush_interval=0.02,
        backoff_cap=0.5,
        close_timeout=60,
    )
    ids: list[str] = []

    def emit() -> None:
        for i in range(3000):
            ids.append(client.record(f"cust_{i % 7}", "api_calls", value=i % 5))
            if i % 100 == 0:
                time.sleep(0.02)

    try:
        sender = threading.Thread(target=emit)
        sender.start()
        while client.stats.accepted < 300:
            time.sleep(0.01)
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.proc.wait(10) if proc.proc else None
        time.sleep(0.3)
        proc.start()
        sender.join()
        client.close()
    finally:
        proc.stop()
    stats = client.stats
    assert (stats.dropped, stats.rejected, stats.abandoned) == (0, 0, 0), stats
    assert stats.retries > 0, "the kill did not interrupt any request"
    assert stats.accepted + stats.duplicates >= 3000
    on_topic = {e.id for e in read_topic(kafka_bootstrap, kafka_topics.usage, 3000)}
    assert set(ids) <= on_topic
    assert len(ids) == 3000


def test_sigterm_drains_in_flight_requests(
    service_env: dict[str, str], pg_conninfo: str, tmp_path: Path
) -> None:
    keys = seed(pg_conninfo)
    proc, url = ingest_process(service_env, tmp_path, linger_ms="1000")
    proc.start()
    results: list[int] = []
    h = {"Authorization": f"Bearer {keys.acme_ingest}"}

    def post(i: int) -> None:
        event = {"id": f"t-{i}", "customer": "c", "meter": "api_calls"}
        results.append(
            httpx.post(url + "/v1/events", json=event, headers=h, timeout=10).status_code
        )

    posts = [threading.Thread(target=post, args=(i,)) for i in range(8)]
    for t in posts:
        t.start()
    while _in_flight(url) < 8:
        time.sleep(0.02)
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGTERM)
    for t in posts:
        t.join()
    assert proc.proc.wait(15) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    assert results == [202] * 8


def _in_flight(url: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith("meterline_ingest_inflight_events "):
            return float(line.split()[1])
    return 0.0
