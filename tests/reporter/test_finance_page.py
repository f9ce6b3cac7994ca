"""The /finance page in a real headless Chromium (Playwright driving the system browser)."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from meterline.tenants import PostgresTenantRepository
from reporter.api import create_app
from tests.reporter.serving import serving
from tests.reporter.support import add_usage, emulator_clock, make_world, reporter_for

pytestmark = pytest.mark.integration
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"


def _chromium() -> str:
    """The system Chromium, installed from Debian's packages when missing (needs root). Test
    processes running side by side (`make test` runs two) install it one at a time: apt takes
    a lock of its own and fails at once when another install holds it."""
    if not Path(CHROMIUM).exists():
        assert os.geteuid() == 0, "install Chromium (`apt-get install chromium`) for this test"
        with open(OUTPUT.parent / ".meterline-chromium.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not Path(CHROMIUM).exists():
                for step in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
                    subprocess.run(step, check=True, capture_output=True, timeout=900)
    assert shutil.which(CHROMIUM), "the system Chromium is needed for the finance page test"
    return CHROMIUM


@pytest.fixture
def served(pg_conninfo, stripe_emulator, stripe_client):
    control, emulator = stripe_emulator.control, stripe_emulator.emulator
    world = make_world(pg_conninfo, stripe_client, n_customers=2)
    clock = emulator_clock(control)
    reporter = reporter_for(world, stripe_client, clock)
    a, b = world.customers.values()
    when = (clock.now() - timedelta(days=1)).replace(hour=9, minute=15)
    for i in range(3):
        add_usage(world, a.key, when + timedelta(minutes=i), 40 + i)
    add_usage(world, b.key, when, 12)
    reporter.push()
    lost = next(r for r in emulator.store.meter_events if r["customer"] == a.stripe_id)
    lost["status"] = "dropped"  # the injected fault: Stripe lost one meter event
    emulator.store.identifiers.pop(lost["identifier"])
    reporter.reconcile(when.date(), "manual")
    key = PostgresTenantRepository(world.pool).create_key("acme", ["read", "admin"])[1]
    with serving(create_app(reporter)) as url:
        yield url, key, a


def test_finance_page_lists_drills_down_and_resolves(served):
    from playwright.sync_api import expect, sync_playwright

    url, key, customer = served
    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url + "/finance")
        expect(page).to_have_url(url + "/finance/login?next=/finance")
        page.fill("#api_key", key)
        page.click("button[type=submit]")
        row = page.locator("table.alerts tbody tr").filter(has_text=customer.key)
        expect(row).to_contain_text("Missing in Stripe")
        expect(row).to_contain_text("-123")
        expect(page.get_by_test_id("open-count")).to_have_text("1")
        page.screenshot(path=str(OUTPUT / "finance-overview.png"), full_page=True)

        row.get_by_role("link", name="Review →").click()
        expect(page.locator("h1")).to_contain_text(customer.key)
        expect(page.locator("table.hours tr.current")).to_contain_text("123")
        expect(page.locator("table.events tbody tr")).to_have_count(3)
        page.screenshot(path=str(OUTPUT / "finance-alert.png"), full_page=True)

        page.fill("#note", "Stripe lost the 09:00 event; resent and checked the invoice")
        page.get_by_role("button", name="Resolve").click()
        expect(page.get_by_test_id("alert-status")).to_have_text("resolved")
        expect(page.locator(".notice")).to_contain_text("resolved")
        page.goto(url + "/finance")
        expect(page.get_by_test_id("open-count")).to_have_text("0")
        expect(page.locator("body")).to_contain_text("Stripe lost the 09:00 event")
        page.screenshot(path=str(OUTPUT / "finance-resolved.png"), full_page=True)

        page.get_by_role("button", name="Sign out").click()
        expect(page.locator(".notice")).to_contain_text("signed out")
        page.goto(url + "/finance")
        expect(page).to_have_url(url + "/finance/login?next=/finance")
        browser.close()


ATTACK = """<!doctype html><title>win a prize</title>
<form id="f" method="post" action="{action}">
<input name="status" value="acknowledged"><input name="csrf" value="{token}"></form>
<script>document.getElementById("f").submit()</script>"""


@contextmanager
def _attacker_site(html: str) -> Iterator[str]:
    """Another origin on the same site (127.0.0.1, another port): SameSite does not stop it."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        thread.join(10)


def test_a_same_site_page_cannot_post_with_the_cookie(served):
    from playwright.sync_api import expect, sync_playwright

    url, key, customer = served
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=ARGS, headless=True)
        page = browser.new_page()
        page.goto(url + "/finance/login")
        page.fill("#api_key", key)
        page.click("button[type=submit]")
        row = page.locator("table.alerts tbody tr").filter(has_text=customer.key)
        row.get_by_role("link", name="Review →").click()
        alert_url = page.url
        leaked = page.locator(".decide input[name=csrf]").get_attribute("value")
        for token in ("", leaked):
            html = ATTACK.format(action=alert_url + "/status", token=token)
            with _attacker_site(html) as attacker:
                page.goto(attacker)
                expect(page).to_have_url(alert_url + "/status")
                expect(page.locator(".error")).to_contain_text("another site")
        page.goto(alert_url)
        expect(page.get_by_test_id("alert-status")).to_have_text("open")
        browser.close()
