"""Slow, oversized and flooding clients against a running ingest process: slow ones lose their
connections at the transport's deadlines and limits and hold no request slot, a flooding tenant
gets its share and 429, and another tenant's events are answered 202 meanwhile. The latencies
are printed (`-s`), never asserted: the promise tested is "served, not refused". The full-size
measurement (marker `reliability`, run by `make reliability` only) pins ingest to one core and
the attackers, this process and the backing services to the other (tests/security/probes.py),
then every server to one core and every client to the other."""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import pytest
from psycopg_pool import ConnectionPool

from meterline.tenants import PostgresTenantRepository
from meterline_devstack.process import ManagedProcess, free_port
from meterline_devstack.stack import DevStack
from tests.ingest.support import ROOT, Seeded, ingest_process, seed
from tests.security import probes

SLOW_BODIES = 128
SLOWLORIS = 2000
DEADLINE_S = 3
PROBE_EVENTS = 300


@pytest.fixture
def slow_key(pg_conninfo: str) -> str:
    """An ingest key of a third tenant, whose clients send their bodies slowly."""
    with ConnectionPool(pg_conninfo, min_size=1, max_size=1) as pool:
        tenants = PostgresTenantRepository(pool)
        tenants.create_tenant("initech")
        return tenants.create_key("initech", ["ingest"])[1]


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


@dataclass(frozen=True)
class Probe:
    """What another tenant measured before and during the attacks, and what the attackers saw."""

    quiet: list[float]
    loaded: list[float]
    statuses: set[int]
    flood: dict[str, int]
    slow: dict[str, Any]

    def line(self) -> str:
        quiet, loaded = probes.p99(self.quiet), probes.p99(self.loaded)
        return (
            f"quiet p99 {quiet * 1000:.1f} ms, under {SLOW_BODIES} slow bodies, {SLOWLORIS} "
            f"slowloris and another tenant's flood p99 {loaded * 1000:.1f} ms: "
            f"{loaded / quiet:.2f}x ({len(self.quiet)} and {len(self.loaded)} events; "
            f"statuses {sorted(self.statuses)}; flood {self.flood}; slow clients {self.slow})"
        )


def _probe(url: str, keys: Seeded, slow_key: str, events: int, cores: probes.Cores) -> Probe:
    """A tenant's `events` single events alone, then under every attack at once: a second
    tenant's slow bodies (`slow_key`) and keyless slowloris heads, reopened as they are cut,
    and a third tenant's flood on 8 connections, all on the cores `cores.rest`. The slow
    clients stop only once each has been cut (at the deadlines, `DEADLINE_S`)."""
    tenant = probes.Tenant(url, keys.acme_ingest)
    tenant.series("warm", 20)
    quiet_statuses, quiet = tenant.series("quiet", events)
    slow_args = [url, slow_key, str(SLOW_BODIES), str(SLOWLORIS)]
    with (
        probes.attacker("slowclients", slow_args, cores.rest) as slow,
        probes.attacker("flood", [url, keys.globex_ingest, "8"], cores.rest) as flood,
    ):
        statuses, loaded = tenant.series("loaded", events)
    tenant.close()
    return Probe(quiet, loaded, quiet_statuses | statuses, flood, slow)


def _assert_served_not_refused(probe: Probe) -> None:
    assert probe.statuses == {202}, probe.line()
    assert probe.flood and set(probe.flood) <= {"202", "429"}, probe.flood
    assert probe.slow["cut"] >= SLOW_BODIES + SLOWLORIS, probe.slow
    assert set(probe.slow["answers"]) <= {"408", "429", "none"}, probe.slow


def test_another_tenant_is_served_under_slow_clients_slowloris_and_a_flood(
    ingest: tuple[str, Seeded, ManagedProcess], slow_key: str
) -> None:
    """Slow bodies and slowloris heads hold no request slot and are cut at the deadlines
    (408); a flooding tenant gets 202 and 429; another tenant's events are all answered 202
    meanwhile. Latency is measured, not asserted: the `reliability` form prints it."""
    url, keys, _ = ingest
    probe = _probe(url, keys, slow_key, 30, probes.Cores(probes.ALL_CPUS, probes.ALL_CPUS))
    print("\n" + probe.line())
    _assert_served_not_refused(probe)


@pytest.mark.reliability
def test_another_tenants_p99_under_every_probe_at_once(
    ingest: tuple[str, Seeded, ManagedProcess], slow_key: str, backing: DevStack
) -> None:
    """Issue 21's figure: another tenant's single-event p99 under 128 slow bodies, 2,000
    slowloris connections and one tenant's flood, against its quiet p99, with ingest alone on
    one core and everything else on the other (printed; the bound of 2x is the coordinator's
    to judge on a quiet machine). Served, not refused, is asserted."""
    url, keys, proc = ingest
    assert proc.pid is not None
    others = [p.pid for p in backing.processes.values() if p.pid] + [os.getpid()]
    _pinned_probe(url, keys, slow_key, [proc.pid], others, "ingest alone")


@pytest.mark.reliability
def test_another_tenants_p99_with_every_client_apart_from_the_servers(
    ingest: tuple[str, Seeded, ManagedProcess], slow_key: str, backing: DevStack
) -> None:
    """The same probe with the servers (ingest, Postgres, Redis, the broker) on one core and
    every client (this process, the attackers) on the other, as when clients run on other
    machines: in the layout above the attackers' own CPU (the flood's client encodes a new
    1,000-event batch for each of its ~700 requests a second, a third of a core) runs on the
    core Redis and the broker answer from, and delays the answers the other tenant waits for.
    Printed beside the first; served, not refused, is asserted."""
    url, keys, proc = ingest
    assert proc.pid is not None
    servers = [proc.pid] + [p.pid for p in backing.processes.values() if p.pid]
    _pinned_probe(url, keys, slow_key, servers, [os.getpid()], "servers apart from clients")


def _pinned_probe(
    url: str, keys: Seeded, slow_key: str, servers: list[int], clients: list[int], layout: str
) -> None:
    """`_probe` with `servers` on the first core and `clients` (and the attackers) on the other;
    prints the figures, asserts served, not refused."""
    cores = probes.Cores.split()
    with probes.pinned(servers, cores.ingest), probes.pinned(clients, cores.rest):
        load_before = os.getloadavg()[0]
        probe = _probe(url, keys, slow_key, PROBE_EVENTS, cores)
        load_after = os.getloadavg()[0]
    where = f"{layout}: {len(servers)} server processes on CPU {sorted(cores.ingest)}"
    if cores.ingest == cores.rest:
        where = "not pinned (one CPU)"
    print(
        f"\n{where}; load average {load_before:.1f} before, {load_after:.1f} after\n" + probe.line()
    )
    _assert_served_not_refused(probe)


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
