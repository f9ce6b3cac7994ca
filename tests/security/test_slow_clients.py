"""Slow, oversized and flooding clients against a running ingest process: slow ones lose their
connections at the transport's deadlines and limits and hold no request slot, a flooding tenant
gets its share and 429, and another tenant's events are answered 202 meanwhile. The latencies
are printed (`-s`), never asserted: the promise tested is "served, not refused"."""

from __future__ import annotations

import socket
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import orjson
import psutil
import pytest

from meterline_devstack.process import ManagedProcess, free_port
from tests.ingest.support import ROOT, Seeded, ingest_process, seed

SLOW_BODIES = 128
SLOWLORIS = 2000
DEADLINE_S = 3


@pytest.fixture
def ingest(
    service_env: dict[str, str], pg_conninfo: str, tmp_path: Path
) -> Iterator[tuple[str, Seeded, ManagedProcess]]:
    keys = seed(pg_conninfo)
    env = {
        **service_env,
        "METERLINE_HTTP_HEADER_TIMEOUT_S": str(DEADLINE_S),
        "METERLINE_HTTP_BODY_TIMEOUT_S": str(DEADLINE_S),
    }
    proc, url = ingest_process(env, tmp_path, max_active_requests="8")
    proc.start()
    try:
        yield url, keys, proc
    finally:
        proc.stop()


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def _one_event(client: httpx.Client, key: str, i: int) -> tuple[int, float]:
    body = orjson.dumps({"id": f"quiet-{i}", "customer": "c", "meter": "api_calls"})
    started = time.perf_counter()
    r = client.post(
        "/v1/events",
        content=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    return r.status_code, time.perf_counter() - started


@contextmanager
def _flood(url: str, key: str, connections: int = 8) -> Iterator[list[int]]:
    """Another tenant sending 1,000-event batches on `connections` connections, as fast as
    ingest answers, while the block runs; yields the statuses it got."""
    statuses: list[int] = []
    stop = threading.Event()

    def send(worker: int) -> None:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        with httpx.Client(base_url=url, timeout=30, headers=headers) as http:
            n = 0
            while not stop.is_set():
                batch = [
                    {"id": f"flood-{worker}-{n}-{i}", "customer": "f", "meter": "api_calls"}
                    for i in range(1000)
                ]
                statuses.append(http.post("/v1/events", content=orjson.dumps(batch)).status_code)
                n += 1

    threads = [threading.Thread(target=send, args=(w,), daemon=True) for w in range(connections)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    try:
        yield statuses
    finally:
        stop.set()
        for t in threads:
            t.join(30)


def _p99(seconds: list[float]) -> float:
    return statistics.quantiles(seconds, n=100)[98] if len(seconds) > 1 else seconds[0]


def test_slow_bodies_and_slowloris_hold_no_slot_and_lose_their_connections(
    ingest: tuple[str, Seeded, ManagedProcess],
) -> None:
    url, keys, _ = ingest
    with httpx.Client(base_url=url, timeout=10) as client, ExitStack() as stack:
        quiet = [_one_event(client, keys.acme_ingest, i) for i in range(30)]
        assert {s for s, _ in quiet} == {202}
        slow = []
        for _ in range(SLOW_BODIES):  # another tenant's valid key: one byte of 100,000
            sock = stack.enter_context(socket.create_connection(_address(url), timeout=10))
            sock.sendall(
                b"POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                b"Authorization: Bearer " + keys.globex_ingest.encode() + b"\r\n"
                b"Content-Length: 100000\r\n\r\n["
            )
            slow.append(sock)
        for _ in range(SLOWLORIS):  # no key at all: a head that never ends
            sock = stack.enter_context(socket.create_connection(_address(url), timeout=10))
            sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: t\r\n")
            slow.append(sock)
        with _flood(url, keys.globex_ingest) as flooded:
            loaded = [_one_event(client, keys.acme_ingest, 100 + i) for i in range(30)]
        print(
            f"\nquiet p99 {_p99([t for _, t in quiet]) * 1000:.1f} ms; under {SLOW_BODIES} slow "
            f"bodies, {SLOWLORIS} slowloris and another tenant's flood of 1,000-event batches "
            f"({sorted(set(flooded))}): p99 {_p99([t for _, t in loaded]) * 1000:.1f} ms"
        )
        assert {s for s, _ in loaded} == {202}, loaded
        assert flooded and set(flooded) <= {202, 429}
        time.sleep(DEADLINE_S + 1)
        cut = 0
        for sock in slow:
            sock.settimeout(5)
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            cut += data.startswith(b"HTTP/1.1 408") or data == b""
        assert cut == len(slow)


def test_oversized_heads_and_bodies_are_refused_unread(
    ingest: tuple[str, Seeded, ManagedProcess],
) -> None:
    url, keys, proc = ingest
    assert proc.pid is not None
    rss_before = psutil.Process(proc.pid).memory_info().rss
    with socket.create_connection(_address(url), timeout=10) as sock:
        sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Length: 419430400\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 413")
    with socket.create_connection(_address(url), timeout=10) as sock:
        sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: t\r\nX-Big: ")
        sent, chunk, answer = 0, b"a" * 65536, b""
        try:
            while sent < 64 * 2**20:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            answer = sock.recv(65536)
        except ConnectionResetError:
            answer = b""
        assert sent < 64 * 2**20 or answer.startswith(b"HTTP/1.1 431")
    grown = psutil.Process(proc.pid).memory_info().rss - rss_before
    print(
        f"\ningest RSS grew by {grown / 2**20:.1f} MiB refusing a 400 MiB body and a 64 MiB header"
    )
    assert grown < 32 * 2**20
    with httpx.Client(base_url=url, timeout=10) as client:
        assert _one_event(client, keys.acme_ingest, 1)[0] == 202


@pytest.mark.parametrize(
    ("module", "port_variable"),
    [("entitlements_api", "METERLINE_ENTITLEMENTS_PORT"), ("reporter", "METERLINE_REPORTER_PORT")],
)
def test_every_service_refuses_oversized_input_before_reading_it(
    service_env: dict[str, str], tmp_path: Path, module: str, port_variable: str
) -> None:
    """The webhook, the admin catalog PUT and /finance/login are all behind the same guard:
    a 400 MiB body is refused from its declared length, a huge head once it passes 32 KiB."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = ManagedProcess(
        module,
        [sys.executable, "-m", module],
        tmp_path / f"{module}.log",
        lambda: _healthy(url),
        env={**service_env, port_variable: str(port), "METERLINE_HOME": str(tmp_path)},
        cwd=ROOT,
    )
    proc.start()
    try:
        assert proc.pid is not None
        rss_before = psutil.Process(proc.pid).memory_info().rss
        for path in ("/v1/stripe/webhook", "/finance/login", "/v1/catalog"):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(
                    f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 419430400\r\n\r\n".encode()
                )
                assert sock.recv(65536).startswith(b"HTTP/1.1 413"), path
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n"
            )
            assert sock.recv(65536).startswith(b"HTTP/1.1 431")
        assert psutil.Process(proc.pid).memory_info().rss - rss_before < 32 * 2**20
        assert httpx.get(url + "/healthz", timeout=5).status_code == 200
    finally:
        proc.stop()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False
