"""/finance sessions, CSRF and headers against the real reporter app and real Postgres.

Each test plays an attacker or a careless browser against the pages: the cookie must not carry
the key, logout and revocation must end a session, a forged post must change nothing, and the
page must never show text taken from the address bar.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from meterline.clock import FakeClock
from meterline.tenants import KeyInfo, PostgresTenantRepository
from reporter.api import create_app
from reporter.service import Reporter
from tests.reporter.serving import serving
from tests.reporter.support import (
    World,
    add_usage,
    emulator_clock,
    make_world,
    reporter_for,
    settings_for,
)

pytestmark = pytest.mark.integration
COOKIE = "meterline_finance"
ATTACKER_TEXT = "Call 555-0100 to keep your account"
EVIL = "http://evil.example"


@dataclass
class Finance:
    world: World
    reporter: Reporter
    clock: FakeClock
    keys: dict[str, tuple[KeyInfo, str]]
    alert_id: int
    stripe_client: Any

    def app(self, **settings: Any) -> FastAPI:
        if not settings:
            return create_app(self.reporter)
        other = reporter_for(self.world, self.stripe_client, self.clock, settings_for(**settings))
        return create_app(other)

    def status(self) -> str:
        return self.reporter.store.alert(self.world.tenant_id, self.alert_id).status


@pytest.fixture
def finance(pg_conninfo, stripe_emulator, stripe_client):
    control, emulator = stripe_emulator.control, stripe_emulator.emulator
    world = make_world(pg_conninfo, stripe_client, n_customers=1)
    clock = emulator_clock(control)
    reporter = reporter_for(world, stripe_client, clock)
    (customer,) = world.customers.values()
    when = clock.now() - timedelta(days=1)
    add_usage(world, customer.key, when, 30)
    reporter.push()
    for record in emulator.store.meter_events:
        record["status"] = "dropped"
        emulator.store.identifiers.pop(record["identifier"], None)
    reporter.reconcile(when.date(), "manual")
    repo = PostgresTenantRepository(world.pool)
    keys = {scope: repo.create_key("acme", [scope]) for scope in ("read", "admin")}
    (alert,) = reporter.store.alerts(world.tenant_id, "open")
    return Finance(world, reporter, clock, keys, alert.id, stripe_client)


def _field(html: str, name: str) -> str:
    """The value of a hidden form field, or "" when the page has none."""
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    return found.group(1) if found else ""


def _sign_in(client: TestClient, key: str) -> Any:
    form = client.get("/finance/login")
    data = {"api_key": key, "next": "/finance", "csrf": _field(form.text, "csrf")}
    return client.post("/finance/login", data=data, follow_redirects=False)


def _client(app: FastAPI, key: str) -> TestClient:
    client = TestClient(app)
    assert _sign_in(client, key).status_code == 303
    return client


def _alert_csrf(client: TestClient, finance: Finance) -> str:
    page = client.get(f"/finance/alerts/{finance.alert_id}", follow_redirects=False)
    assert page.status_code == 200
    return _field(page.text, "csrf")


def _signed_in(client: TestClient) -> bool:
    answer = client.get("/finance", follow_redirects=False)
    assert answer.status_code in (200, 303)
    return answer.status_code == 200


def test_the_cookie_holds_a_session_id_and_no_part_of_the_key(finance):
    _, key = finance.keys["read"]
    client = _client(finance.app(), key)
    cookie = client.cookies.get(COOKIE)
    assert cookie and _signed_in(client)
    assert not any(key[i : i + 8] in cookie for i in range(len(key) - 7))
    assert len(cookie) >= 43


def test_logout_ends_the_session_on_the_server(finance):
    app = finance.app()
    client = _client(app, finance.keys["read"][1])
    stolen = client.cookies.get(COOKIE)
    csrf = _field(client.get("/finance").text, "csrf")
    answer = client.post("/finance/logout", data={"csrf": csrf}, follow_redirects=False)
    assert answer.status_code == 303
    assert not _signed_in(client)
    assert not _signed_in(TestClient(app, cookies={COOKIE: stolen}))


def test_forged_posts_are_refused_with_403_and_change_nothing(finance):
    app = finance.app()
    victim = _client(app, finance.keys["admin"][1])
    csrf = _alert_csrf(victim, finance)
    url = f"/finance/alerts/{finance.alert_id}/status"
    forged: list[tuple[dict[str, str], dict[str, str]]] = [
        ({"status": "acknowledged"}, {}),
        ({"status": "acknowledged", "csrf": "x" * len(csrf or "x")}, {}),
        ({"status": "acknowledged", "csrf": csrf}, {"Origin": EVIL}),
        ({"status": "acknowledged", "csrf": csrf}, {"Origin": "null"}),
        ({"status": "acknowledged", "csrf": csrf}, {"Referer": EVIL + "/page"}),
    ]
    for data, headers in forged:
        answer = victim.post(url, data=data, headers=headers, follow_redirects=False)
        assert answer.status_code == 403, (data, headers)
    repair = f"/finance/alerts/{finance.alert_id}/repair"
    assert victim.post(repair, data={"action": "resend"}, follow_redirects=False).status_code == 403
    assert victim.post("/finance/logout", follow_redirects=False).status_code == 403
    assert finance.status() == "open" and _signed_in(victim)
    assert finance.reporter.store.repairs(finance.alert_id) == []

    same = {"Origin": "http://testserver"}
    data = {"status": "acknowledged", "csrf": csrf}
    assert victim.post(url, data=data, headers=same, follow_redirects=False).status_code == 303
    assert finance.status() == "acknowledged"


def test_a_token_works_only_with_its_own_session(finance):
    app = finance.app()
    mine = _client(app, finance.keys["admin"][1])
    theirs = _client(app, finance.keys["admin"][1])
    data = {"status": "acknowledged", "csrf": _alert_csrf(theirs, finance)}
    url = f"/finance/alerts/{finance.alert_id}/status"
    assert mine.post(url, data=data, follow_redirects=False).status_code == 403
    assert finance.status() == "open"


def test_login_needs_the_form_token_and_a_same_origin_post(finance):
    client = TestClient(finance.app())
    _, key = finance.keys["read"]
    bare = client.post("/finance/login", data={"api_key": key}, follow_redirects=False)
    assert bare.status_code == 403 and COOKIE not in client.cookies
    token = _field(client.get("/finance/login").text, "csrf")
    data = {"api_key": key, "csrf": token}
    forged = client.post("/finance/login", data=data, headers={"Origin": EVIL})
    assert forged.status_code == 403 and COOKIE not in client.cookies
    assert client.post("/finance/login", data=data, follow_redirects=False).status_code == 303


def test_security_headers_on_every_page(finance):
    client = _client(finance.app(), finance.keys["admin"][1])
    pages = ["/finance/login", "/finance", f"/finance/alerts/{finance.alert_id}"]
    pages += ["/finance/alerts.csv", "/finance/alerts/999999"]
    for path in pages:
        headers = client.get(path, follow_redirects=False).headers
        csp = headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp, path
        assert "script-src" not in csp or "'unsafe-inline'" not in csp, path
        assert headers.get("x-content-type-options") == "nosniff", path
        assert "no-store" in headers.get("cache-control", ""), path
    static = client.get("/finance/static/finance.css").headers
    assert static.get("x-content-type-options") == "nosniff"


def test_page_boxes_never_show_text_from_the_address_bar(finance):
    client = TestClient(finance.app())
    for value in (f"<script>alert(1)</script>{ATTACKER_TEXT}", ATTACKER_TEXT, "bad_key x"):
        page = client.get("/finance/login", params={"error": value, "message": value})
        assert ATTACKER_TEXT not in page.text and "alert(1)" not in page.text
    assert "unknown or revoked" in client.get("/finance/login?error=bad_key").text
    _sign_in(client, finance.keys["read"][1])
    for path in ("/finance", f"/finance/alerts/{finance.alert_id}"):
        page = client.get(path, params={"message": ATTACKER_TEXT, "error": ATTACKER_TEXT})
        assert page.status_code == 200 and ATTACKER_TEXT not in page.text, path


def test_a_revoked_key_ends_its_sessions_at_once(finance):
    info, key = finance.keys["admin"]
    client = _client(finance.app(), key)
    csrf = _alert_csrf(client, finance)
    PostgresTenantRepository(finance.world.pool).revoke_key(info.id)
    assert not _signed_in(client)
    url = f"/finance/alerts/{finance.alert_id}/status"
    answer = client.post(url, data={"status": "resolved", "csrf": csrf}, follow_redirects=False)
    assert answer.status_code == 303 and "/finance/login" in answer.headers["location"]
    assert finance.status() == "open"


def test_sessions_expire_when_idle_and_after_their_lifetime(finance):
    app = finance.app(session_idle_s=600, session_max_s=1800)
    _, key = finance.keys["read"]
    client = _client(app, key)
    finance.clock.advance(601)
    assert not _signed_in(client)

    client = _client(app, key)
    for _ in range(3):
        finance.clock.advance(590)
        assert _signed_in(client)
    finance.clock.advance(100)
    assert not _signed_in(client)


def _set_cookie(
    app: FastAPI, key: str, headers: dict[str, str] | None = None, base: str = "http://testserver"
) -> str:
    client = TestClient(app, base_url=base)
    token = _field(client.get("/finance/login").text, "csrf")
    data = {"api_key": key, "csrf": token}
    answer = client.post("/finance/login", data=data, headers=headers, follow_redirects=False)
    assert answer.status_code == 303
    (cookie,) = [c for c in answer.headers.get_list("set-cookie") if c.startswith(COOKIE + "=")]
    return cookie.lower()


def test_the_cookie_is_secure_over_tls_or_when_configured(finance):
    _, key = finance.keys["read"]
    auto = finance.app(cookie_secure="auto")
    assert "secure" not in _set_cookie(auto, key)
    assert "; secure" in _set_cookie(auto, key, {"X-Forwarded-Proto": "https"})
    assert "; secure" in _set_cookie(auto, key, base="https://testserver")
    assert "; secure" in _set_cookie(
        finance.app(cookie_secure=True), key, base="https://testserver"
    )
    plain = _set_cookie(finance.app(cookie_secure=False), key, {"X-Forwarded-Proto": "https"})
    assert "secure" not in plain
    for attribute in ("httponly", "samesite=strict", "path=/finance"):
        assert attribute in plain


def _answer_head(url: str, request: bytes) -> str:
    """The head of the server's answer to `request`, or "" if it waits for more (10 s)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request)
        try:
            return sock.recv(65536).split(b"\r\n\r\n", 1)[0].decode().lower()
        except TimeoutError:
            return ""


def test_a_huge_login_body_answers_413_before_it_is_read(finance):
    start = "POST /finance/login HTTP/1.1\r\nHost: {host}\r\n"
    start += "Content-Type: application/x-www-form-urlencoded\r\n{length}\r\n"
    with serving(finance.app()) as url:
        host = urlsplit(url).netloc
        declared = start.format(host=host, length="Content-Length: 419430400\r\n")
        head = _answer_head(url, declared.encode() + b"api_key=" + b"a" * 1024)
        assert head.startswith("http/1.1 413") and "connection: close" in head, head
        chunk = b"a" * 65536
        chunked = start.format(host=host, length="Transfer-Encoding: chunked\r\n").encode()
        chunked += b"10000\r\n" + chunk + b"\r\n"
        head = _answer_head(url, chunked)
        assert head.startswith("http/1.1 413") and "connection: close" in head, head
