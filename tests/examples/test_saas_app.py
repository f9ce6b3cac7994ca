"""The example app in a real headless Chromium (Playwright driving the system browser), through
the real entitlements API, aggregator and Stripe emulator: sign-up -> checkout on the emulator's
hosted page -> usage with its chart -> upgrade with the proration preview -> cancel and resume
-> a failed renewal's banner. Screenshots go to test-output/."""

from __future__ import annotations

import re

import pytest

from tests.examples.conftest import ExampleStack
from tests.reporter.test_finance_page import ARGS, OUTPUT, _chromium

pytestmark = pytest.mark.integration
MONEY = re.compile(r"\$[0-9,]+\.[0-9]{2}")


def test_sign_up_checkout_use_upgrade_cancel(example_stack: ExampleStack) -> None:
    from playwright.sync_api import expect, sync_playwright

    url = example_stack.app
    OUTPUT.mkdir(exist_ok=True)
    shot = lambda page, name: page.screenshot(path=str(OUTPUT / f"saas-{name}.png"), full_page=True)  # noqa: E731
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.set_default_timeout(15_000)
        expect.set_options(timeout=15_000)

        # sign-up, then the pricing page from the catalog's plans
        page.goto(url)
        page.fill("#name", "Jo Example")
        page.get_by_role("button", name="Sign up").click()
        expect(page).to_have_url(re.compile(r"/pricing"))
        plans = page.locator("section.plan")
        expect(plans).to_have_count(3)
        expect(plans.nth(1)).to_contain_text("$9.00 / month")
        expect(plans.nth(2)).to_contain_text("$49.00 / month")
        shot(page, "1-pricing")
        page.get_by_role("link", name="Dashboard").click()  # not yet in Meterline: the Free plan
        expect(page.get_by_test_id("plan")).to_have_text("Free")
        expect(page.get_by_test_id("used-api_calls")).to_have_text("0")
        expect(page.locator("table.invoices")).to_have_count(0)
        page.get_by_role("link", name="Pricing").click()

        # checkout: Meterline's billing API -> the emulator's hosted page -> back to the app
        page.get_by_role("button", name="Choose Basic").click()
        expect(page.locator("h1")).to_have_text("Pay 9.00 USD")
        shot(page, "2-checkout")
        page.get_by_role("button", name="Pay").click()
        expect(page).to_have_url(re.compile(r"/dashboard"))
        expect(page.locator(".notice")).to_contain_text("You are on Basic now")
        expect(page.get_by_test_id("plan")).to_have_text("Basic")
        expect(page.get_by_test_id("status")).to_have_text("active")
        first = page.locator("table.invoices tbody tr")
        expect(first).to_have_count(1)
        expect(first).to_contain_text("$9.00")  # the first period, invoiced at once

        # usage: consumes through the SDK, counted by the pipeline, charted in SVG
        for _ in range(2):
            page.get_by_role("button", name="Use 10 API calls").click()
        expect(page.get_by_test_id("used-api_calls")).to_have_text("20")
        chart = page.locator('svg.chart[data-feature="api_calls"]')
        for _ in range(40):  # the aggregator counts the consumes' events within seconds
            if chart.get_attribute("data-total") == "20":
                break
            page.wait_for_timeout(500)
            page.reload()
        expect(chart).to_have_attribute("data-total", "20")
        expect(chart.locator("rect")).not_to_have_count(0)
        shot(page, "3-usage")

        # upgrade: the preview's amount is what is then invoiced
        page.goto(url + "/pricing")
        page.get_by_role("link", name="Switch to Power").click()
        due = page.get_by_test_id("due-today")
        expect(due).to_contain_text("charged")
        previewed = MONEY.search(due.inner_text())
        assert previewed is not None
        shot(page, "4-upgrade-preview")
        page.get_by_role("button", name="Confirm").click()
        expect(page.locator(".notice")).to_contain_text(f"charged {previewed.group()}")
        expect(page.get_by_test_id("plan")).to_have_text("Power")
        invoices = page.locator("table.invoices tbody tr")
        expect(invoices).to_have_count(2)
        expect(invoices.first).to_contain_text(previewed.group())
        expect(invoices.first).to_contain_text("paid")

        # cancel at the period end, then resume
        page.get_by_role("button", name="Cancel subscription").click()
        expect(page.get_by_test_id("ending")).to_contain_text("Your subscription ends on")
        expect(page.get_by_test_id("plan")).to_have_text("Power")
        shot(page, "5-canceled")
        page.get_by_role("button", name="Resume subscription").click()
        expect(page.get_by_test_id("ending")).to_have_count(0)

        # the card fails at the renewal: the payment-failed banner links the open invoice
        _fail_the_renewal(example_stack)
        for _ in range(20):  # until Meterline has the webhooks
            page.reload()
            if page.get_by_test_id("payment-failed").count():
                break
            page.wait_for_timeout(500)
        banner = page.get_by_test_id("payment-failed")
        expect(banner).to_contain_text("Your last payment failed")
        shot(page, "6-payment-failed")
        banner.get_by_role("link").click()
        expect(page.locator("#status")).to_have_text("open")
        expect(page.locator("#amount-due")).to_contain_text("49.00 USD")
        browser.close()


def _fail_the_renewal(stack: ExampleStack) -> None:
    """The customer's card now fails charges; the period closes and its invoice is declined."""
    client = stack.stripe.client()
    (customer,) = client.v1.customers.list().data
    card = client.v1.payment_methods.attach("pm_card_chargeCustomerFail", {"customer": customer.id})
    client.v1.customers.update(
        customer.id, {"invoice_settings": {"default_payment_method": card.id}}
    )
    (sub,) = client.v1.subscriptions.list({"customer": customer.id}).data
    stack.stripe.control.close_period(sub.id)
