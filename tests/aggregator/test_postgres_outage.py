"""Postgres down at start-up and mid-run: the aggregator waits it out in the same process.

The database sits behind a TCP proxy the test can cut: `down()` refuses new connections and
drops open ones (what the aggregator sees when Postgres stops), `up()` listens again on the same
port. Before the fix, an unreachable Postgres raised ConfigError from the ledger writer's
reconnect (and from `open_pool` at start-up), which the retries did not cover: the process
exited, and under a supervisor it crash-looped for as long as the outage lasted.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
from psycopg_pool import ConnectionPool

from aggregator.metrics import AggregatorMetrics
from aggregator.progress import Progress
from aggregator.retry import Retrier
from meterline_devstack.process import free_port
from tests.aggregator.support import (
    Aggregator,
    consumed,
    ledger_count,
    make_stream,
    publish,
    setup_tenant,
    wait_for,
)
from tests.aggregator.test_exactly_once import assert_exact
from tests.fixtures.services import Topics


class Proxy:
    """A loopback TCP proxy to `target` that can be cut and restored on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            _close(listener)  # shutdown() wakes the thread blocked in accept()
        with self._lock:
            dropped, self._open = self._open, []
        for sock in dropped:
            _close(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        return
    finally:
        _close(source)
        _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@pytest.fixture
def proxy(pg_conninfo: str) -> Iterator[Proxy]:
    parts = urlsplit(pg_conninfo)
    p = Proxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    yield p
    p.down()


def _through(url: str, proxy: Proxy) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) > 1 else host))


def _ready(agg: Aggregator) -> httpx.Response:
    return agg.get("/readyz")


@pytest.mark.integration
@pytest.mark.slow
def test_started_while_postgres_is_down_it_waits_then_counts_everything(
    pool: ConnectionPool,
    proxy: Proxy,
    service_env: dict[str, str],
    kafka_topics: Topics,
    tmp_path: Path,
    redis_url: str,
) -> None:
    tenant = setup_tenant(pool)
    stream = make_stream(tenant, 5_000, seed=31)
    publish(service_env["METERLINE_KAFKA_BOOTSTRAP"], kafka_topics.usage, stream.events)
    env = {
        **service_env,
        "METERLINE_DATABASE_URL": _through(service_env["METERLINE_DATABASE_URL"], proxy),
    }
    agg = Aggregator(env, tmp_path / "agg.log")
    try:
        agg.start()  # serves /healthz although Postgres does not answer
        pid = agg.proc.pid
        wait_for(lambda: "waiting_for" in _ready(agg).json(), 60, "/readyz to report the wait")
        assert _ready(agg).status_code == 503
        assert _ready(agg).json()["waiting_for"] == "postgres"
        time.sleep(3)  # several retries' worth of outage
        assert agg.proc.alive() and agg.proc.pid == pid
        assert consumed(pool) == 0
        proxy.up()
        wait_for(lambda: consumed(pool) == len(stream.events), 120, "every message consumed")
        assert agg.proc.alive() and agg.proc.pid == pid
        assert_exact(pool, redis_url, tenant, stream.expected)
        assert ledger_count(pool) == stream.unique
        wait_for(lambda: _ready(agg).status_code == 200, 30, "/readyz to recover")
    finally:
        agg.stop()


@pytest.mark.integration
@pytest.mark.slow
def test_postgres_cut_mid_run_the_same_process_resumes_exactly(
    pool: ConnectionPool,
    proxy: Proxy,
    service_env: dict[str, str],
    kafka_topics: Topics,
    tmp_path: Path,
    redis_url: str,
) -> None:
    tenant = setup_tenant(pool)
    stream = make_stream(tenant, 20_000, seed=32)
    half = len(stream.events) // 2
    boot = service_env["METERLINE_KAFKA_BOOTSTRAP"]
    env = {
        **service_env,
        "METERLINE_DATABASE_URL": _through(service_env["METERLINE_DATABASE_URL"], proxy),
    }
    proxy.up()
    agg = Aggregator(env, tmp_path / "agg.log", METERLINE_AGGREGATOR_BATCH_SIZE="500")
    try:
        agg.start()
        pid = agg.proc.pid
        publish(boot, kafka_topics.usage, stream.events[:half])
        wait_for(lambda: consumed(pool) == half, 60, "the first half consumed")
        proxy.down()
        publish(boot, kafka_topics.usage, stream.events[half:])  # needs Postgres to be counted
        wait_for(lambda: _ready(agg).status_code == 503, 60, "/readyz to report the outage")
        assert _ready(agg).json().get("waiting_for") == "postgres"
        time.sleep(3)  # several reconnection attempts fail meanwhile
        assert agg.proc.alive() and agg.proc.pid == pid
        proxy.up()
        wait_for(lambda: consumed(pool) == len(stream.events), 120, "every message consumed")
        assert agg.proc.alive() and agg.proc.pid == pid
        assert_exact(pool, redis_url, tenant, stream.expected)
        assert ledger_count(pool) == stream.unique
    finally:
        agg.stop()


def test_readiness_reports_the_dependency_waited_for_until_it_answers() -> None:
    progress = Progress(30.0)
    retrier = Retrier(AggregatorMetrics(), threading.Event(), max_wait_s=0.01, progress=progress)
    seen: list[tuple[bool, dict[str, object]]] = []

    def flaky() -> int:
        seen.append(progress.status())
        if len(seen) < 3:
            raise psycopg.OperationalError("connection refused")
        return 7

    assert retrier.call(flaky, "postgres") == 7
    assert seen[0][0] is True
    assert [s[1].get("waiting_for") for s in seen[1:]] == ["postgres", "postgres"]
    assert not any(ready for ready, _ in seen[1:])
    ready, details = progress.status()
    assert ready and "waiting_for" not in details
