"""Rendering: the Jinja2 templates (autoescaped) and the filters they use for money, dates and
plan limits."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

TEMPLATES = Path(__file__).parent / "templates"


def money(minor: int | None, currency: str = "usd") -> str:
    """`$47.50` for dollars, `12.00 EUR` for other currencies; minor units in."""
    if minor is None:
        return "-"
    sign = "-" if minor < 0 else ""
    amount = f"{abs(minor) / 100:,.2f}"
    return f"{sign}${amount}" if currency.lower() == "usd" else f"{sign}{amount} {currency.upper()}"


def day(timestamp: int | str | None) -> str:
    """`March 1, 2027` from epoch seconds or an ISO 8601 time."""
    if timestamp is None:
        return "-"
    if isinstance(timestamp, str):
        when = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    else:
        when = datetime.fromtimestamp(timestamp, UTC)
    return f"{when:%B} {when.day}, {when.year}"


def limit(entitlement: Any) -> str:
    """A plan's entitlement as the pricing page states it."""
    if isinstance(entitlement, bool):
        return "included" if entitlement else "-"
    if isinstance(entitlement, dict):
        cap, reset = entitlement.get("limit"), entitlement.get("reset")
        if cap is None:
            return "unlimited"
        per = f" per {str(reset).replace('billing_period', 'period')}" if reset else ""
        return f"{qty(cap)}{per}"
    return str(entitlement)


def qty(value: Any) -> str:
    """A usage quantity with thousands separators (`100,000`, `2.5`)."""
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return f"{int(value):,}"
    return str(value)


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(money=money, day=day, limit=limit, qty=qty)
    return env
