"""The Revenue tab of /finance in a real headless Chromium: the 14 hand-worked months of
test_revenue.py as stacked bars, MRR and NRR lines, the metered usage billed on closed invoices
in a column of its own beside MRR, and a drill-down to a movement's customers. Screenshots go
to test-output/."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from meterline.revenue.postgres import PostgresRevenueEventStore
from meterline.tenants import PostgresTenantRepository
from reporter.api import create_app
from tests.reporter.serving import serving
from tests.reporter.support import emulator_clock, make_world, reporter_for
from tests.reporter.test_finance_page import ARGS, OUTPUT, _chromium
from tests.reporter.test_revenue import HISTORY, INVOICES, MORE_INVOICES

pytestmark = pytest.mark.integration
RANGE = "from=2025-11&to=2026-12"


@pytest.fixture
def served(pg_conninfo: str, stripe_emulator: Any, stripe_client: Any) -> Iterator[tuple[str, str]]:
    world = make_world(pg_conninfo, stripe_client, n_customers=1)
    reporter = reporter_for(world, stripe_client, emulator_clock(stripe_emulator.control))
    store = PostgresRevenueEventStore(world.pool)
    for n, state in enumerate(HISTORY):
        store.add(world.tenant_id, f"evt_{n}", state)
    for invoice in INVOICES + MORE_INVOICES:
        store.add_invoice(world.tenant_id, invoice)
    key = PostgresTenantRepository(world.pool).create_key("acme", ["read"])[1]
    with serving(create_app(reporter)) as url:
        yield url, key


def test_revenue_tab_charts_and_drills_down(served: tuple[str, str]) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, key = served
    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url + "/finance/login")
        page.fill("#api_key", key)
        page.click("button[type=submit]")
        page.get_by_role("link", name="Revenue").click()
        expect(page.locator("h1")).to_contain_text("Revenue")
        page.goto(f"{url}/finance/revenue?{RANGE}")
        expect(page.get_by_test_id("mrr-usd")).to_have_text("163.00 USD")
        expect(page.get_by_test_id("nrr-usd")).to_have_text("138.03%")  # 9,800 / 7,100
        # One segment per non-zero movement sum: 12 months with one kind, two with two, August none.
        expect(page.locator("[data-testid=bars-usd] rect.seg")).to_have_count(15)
        expect(page.locator("[data-testid=lines-usd] polyline.mrr")).to_have_count(1)
        expect(page.locator("table.months tr[data-month='2026-10']")).to_contain_text("247.00 USD")
        # Metered usage beside MRR, never in it: G's 1,234 units x 5 closed in 2025-12, where
        # MRR ends at 71.00 USD all the same; nothing metered in the last month.
        december = page.locator("table.months tr[data-month='2025-12']")
        expect(december.locator("td.metered")).to_have_text("61.70 USD")
        expect(december).to_contain_text("71.00 USD")
        expect(page.locator("table.months tr[data-month='2026-01'] td.metered")).to_have_text(
            "100.00 USD"
        )
        expect(page.locator("table.months tr[data-month='2026-03'] td.metered")).to_have_text(
            "3.00 USD"  # 7.00 voided, 3.00 open
        )
        expect(page.get_by_test_id("metered-usd")).to_have_text("0.00 USD")
        expect(page.get_by_test_id("mrr-usd")).to_have_text("163.00 USD")
        page.screenshot(path=str(OUTPUT / "finance-revenue.png"), full_page=True)

        page.locator("rect.seg[data-month='2026-10'][data-kind='expansion']").click()
        drill = page.locator("#drill")
        expect(drill.locator("h2")).to_contain_text("expansion in 2026-10")
        expect(drill.locator("tbody tr")).to_have_count(1)
        expect(drill.locator("tbody tr")).to_contain_text("B")
        expect(drill.locator("tbody tr")).to_contain_text("89.00 USD")  # 9,800 - 900
        page.screenshot(path=str(OUTPUT / "finance-revenue-drilldown.png"), full_page=True)

        page.fill("#from", "2026-09")
        page.fill("#to", "2026-12")
        page.get_by_role("button", name="Show").click()
        expect(page.locator("table.months tbody tr")).to_have_count(4)
        expect(page.locator("[data-testid=bars-usd] rect.seg")).to_have_count(6)
        page.fill("#from", "2025-11")
        page.fill("#to", "2026-01")
        page.get_by_role("button", name="Show").click()
        expect(page.get_by_test_id("metered-usd")).to_have_text("100.00 USD")  # 2,000 x 5
        page.screenshot(path=str(OUTPUT / "finance-revenue-metered.png"), full_page=True)

        page.goto(f"{url}/finance/revenue?{RANGE}&month=2026-12")
        expect(page.locator("#drill tbody tr")).to_have_count(2)  # E churns, D contracts
        page.goto(f"{url}/finance/revenue?month=2026-13")
        expect(page.locator("body")).to_contain_text("month: must be a month as YYYY-MM")
        browser.close()
