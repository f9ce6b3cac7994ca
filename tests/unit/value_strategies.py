"""Hypothesis strategies for usage values under the rule of `meterline.values`."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import strategies as st

EDGES = [Decimal(s) for s in ("0", "0.1", "0.000001", "3", "1e15", "999999999.999999")]
EDGES += [Decimal("123456789012345"), Decimal("0.123456"), Decimal("99999999999999.9")]


def rule_decimals() -> st.SearchStrategy[Decimal]:
    """Exact values under the rule: at most 15 significant digits and 6 decimals, 0 to 1e15."""
    drawn = st.builds(
        lambda digits, places: Decimal(digits).scaleb(-places),
        st.integers(0, 10**15 - 1) | st.integers(0, 10**6),
        st.integers(0, 6),
    )
    return drawn | st.sampled_from(EDGES)


def rule_floats() -> st.SearchStrategy[float]:
    """The same values as the doubles that carry them (JSON numbers, Kafka messages)."""
    return rule_decimals().map(float)
