"""The example app's pure pieces: the SVG chart, the signed account cookie, the page filters
and the settings."""

from __future__ import annotations

import re

import pytest

from examples.saas_app.accounts import Cookies, new_account
from examples.saas_app.charts import usage_chart
from examples.saas_app.pages import day, limit, money, qty
from examples.saas_app.settings import Settings


def _point(minute: int, value: object) -> dict[str, object]:
    return {"start": f"2026-12-06T10:{minute:02d}:00Z", "value": value, "count": 1}


def test_the_chart_draws_a_bar_per_window_with_usage_and_states_the_total() -> None:
    svg = usage_chart("api_calls", [_point(0, 0), _point(1, 30), _point(2, "0.5"), _point(3, 60)])
    assert 'data-total="90.5"' in svg
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([0-9.]+)"', svg)]
    assert len(heights) == 3 and heights[2] == max(heights) == 150.0  # the peak fills the chart
    assert heights[0] == pytest.approx(75.0)
    assert "<title>api_calls: 90.5 in the last 4 minutes</title>" in svg
    assert ">10:00<" in svg and ">10:03<" in svg


def test_an_empty_series_draws_the_axis_alone() -> None:
    svg = usage_chart("tokens", [])
    assert 'data-total="0"' in svg and "<rect" not in svg


def test_the_chart_escapes_what_it_prints() -> None:
    assert "<script>" not in usage_chart("<script>", [_point(0, 1)])


def test_the_cookie_round_trips_and_refuses_forgeries() -> None:
    cookies = Cookies("secret")
    account = new_account("Jo Example!")
    assert re.fullmatch(r"acct-jo-example-[0-9a-f]{6}", account.id)
    value = cookies.dump(account)
    assert cookies.load(value) == account
    payload, signature = value.split(".")
    assert cookies.load(f"{payload}.{'0' * len(signature)}") is None
    assert Cookies("other").load(value) is None
    for bad in (None, "", "x", "x.y", "."):
        assert cookies.load(bad) is None


def test_filters() -> None:
    assert (money(4750), money(-500), money(1200, "eur"), money(None)) == (
        "$47.50",
        "-$5.00",
        "12.00 EUR",
        "-",
    )
    assert day(1796083200) == "December 1, 2026" and day("2027-03-01T00:00:00Z") == "March 1, 2027"
    assert limit({"limit": 100000, "reset": "billing_period"}) == "100,000 per period"
    assert (limit({"limit": None}), limit(True), limit(False)) == ("unlimited", "included", "-")
    assert (qty(100000), qty(2.5), qty(20.0)) == ("100,000", "2.5", "20")


def test_settings_name_every_missing_variable() -> None:
    with pytest.raises(
        ValueError, match="METERLINE_EXAMPLE_ENTITLEMENTS_URL, METERLINE_EXAMPLE_API_KEY"
    ):
        Settings.from_env({})
    found = Settings.from_env(
        {"METERLINE_EXAMPLE_ENTITLEMENTS_URL": "http://m/", "METERLINE_EXAMPLE_API_KEY": "k"}
    )
    assert (found.entitlements_url, found.public_url, found.port) == (
        "http://m",
        "http://127.0.0.1:8010",
        8010,
    )
