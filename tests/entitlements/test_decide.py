"""The pure decision: every reason code, payment policies, grants, and Hypothesis properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from meterline.entitlements import (
    Grant,
    PaymentState,
    Reason,
    Subscription,
    decide,
    evaluate,
)
from tests.entitlements.catalogs import small_catalog

NOW = datetime(2026, 11, 18, 12, tzinfo=UTC)
CATALOG = small_catalog()
DENIALS = {
    Reason.LIMIT_EXCEEDED,
    Reason.NOT_IN_PLAN,
    Reason.NO_SUBSCRIPTION,
    Reason.SUBSCRIPTION_INACTIVE,
}


def sub(plan: str, status: str = "active", **kw: object) -> Subscription:
    return Subscription(1, "c1", plan, status, "stripe", **kw)  # type: ignore[arg-type]


def grant(kind: str, amount: float | None, feature: str = "api_calls", **kw: object) -> Grant:
    return Grant(1, 1, "c1", feature, kind, amount, NOW - timedelta(days=1), **kw)  # type: ignore[arg-type]


def check(
    feature: str,
    subscription: Subscription | None = None,
    grants: list[Grant] | None = None,
    used: float = 0,
    amount: float | None = None,
    now: datetime = NOW,
):  # type: ignore[no-untyped-def]
    f = CATALOG.feature(feature)
    assert f is not None
    ev = evaluate(CATALOG, f, subscription, grants or [], now)
    return decide(ev, used, amount)


def test_within_limit_on_the_default_plan_counts_the_week() -> None:
    d = check("api_calls", used=10)
    assert (d.has_access, d.reason, d.plan, d.limit, d.remaining) == (
        True,
        Reason.WITHIN_LIMIT,
        "free",
        50,
        40,
    )
    assert d.period is not None and d.period.start == datetime(2026, 11, 16, tzinfo=UTC)
    assert d.payment_state is PaymentState.NONE


def test_limit_exceeded_when_the_amount_does_not_fit() -> None:
    assert check("api_calls", used=50).reason is Reason.LIMIT_EXCEEDED
    assert check("api_calls", used=45, amount=6).reason is Reason.LIMIT_EXCEEDED
    assert check("api_calls", used=45, amount=5).reason is Reason.WITHIN_LIMIT


def test_overage_allowed_on_power() -> None:
    d = check("api_calls", sub("power"), used=100_000)
    assert (d.has_access, d.reason, d.overage) == (True, Reason.OVERAGE_ALLOWED, "allow")


def test_unlimited_and_included() -> None:
    assert check("api_calls", sub("unlimited"), used=10**12).reason is Reason.UNLIMITED
    d = check("export", sub("power"))
    assert (d.has_access, d.reason, d.kind) == (True, Reason.INCLUDED, "boolean")
    static = check("support", sub("basic"))
    assert (static.reason, static.value) == (Reason.INCLUDED, "email")


def test_not_in_plan_and_no_subscription() -> None:
    assert check("export", sub("basic")).reason is Reason.NOT_IN_PLAN
    d = check("export")
    assert (d.has_access, d.reason) == (False, Reason.NO_SUBSCRIPTION)


def test_past_due_keeps_the_plan_during_grace_then_falls_back() -> None:
    since = NOW - timedelta(days=3)
    d = check("export", sub("power", "past_due", past_due_since=since))
    assert (d.has_access, d.reason, d.payment_state) == (
        True,
        Reason.PAYMENT_GRACE,
        PaymentState.GRACE,
    )
    assert d.grace_ends == since + timedelta(days=7)
    late = check("export", sub("power", "past_due", past_due_since=NOW - timedelta(days=8)))
    assert (late.has_access, late.reason, late.plan) == (
        False,
        Reason.SUBSCRIPTION_INACTIVE,
        "free",
    )
    metered = check("api_calls", sub("power", "past_due", past_due_since=NOW - timedelta(days=8)))
    assert (metered.plan, metered.limit, metered.payment_state) == (
        "free",
        50,
        PaymentState.FALLBACK,
    )


def test_unpaid_canceled_paused_fall_back_to_the_policy_plan() -> None:
    for status in ("unpaid", "canceled", "paused", "incomplete"):
        d = check("export", sub("power", status))
        assert (d.has_access, d.reason, d.plan) == (False, Reason.SUBSCRIPTION_INACTIVE, "free")
        assert check("api_calls", sub("power", status)).limit == 50


def test_billing_period_from_the_subscription() -> None:
    start = datetime(2026, 10, 31, 7, tzinfo=UTC)
    s = sub(
        "power",
        current_period_start=start,
        current_period_end=datetime(2026, 11, 30, 7, tzinfo=UTC),
    )
    d = check("api_calls", s)
    assert d.period is not None and d.period.start == start


def test_grants_add_credits_and_overrides() -> None:
    assert check("api_calls", grants=[grant("credit", 25)], used=60).reason is Reason.WITHIN_LIMIT
    assert check("api_calls", grants=[grant("top_up", 10)]).limit == 60
    assert check("api_calls", grants=[grant("override", 5000)]).limit == 5000
    assert check("api_calls", grants=[grant("override", None)]).reason is Reason.UNLIMITED
    assert check("export", grants=[grant("override", None, "export")]).reason is Reason.INCLUDED
    expired = grant("credit", 25, expires_at=NOW - timedelta(hours=1))
    assert check("api_calls", grants=[expired]).limit == 50
    voided = grant("credit", 25, voided_at=NOW - timedelta(hours=1))
    assert check("api_calls", grants=[voided]).limit == 50


plans = st.sampled_from(["free", "basic", "power", "unlimited", "gone"])
statuses = st.sampled_from(
    ["active", "trialing", "past_due", "canceled", "unpaid", "paused", "incomplete"]
)
features = st.sampled_from(["api_calls", "export", "support", "sso"])
amounts = st.one_of(st.none(), st.decimals(Decimal("0.001"), 10**6, places=6))
quantities = st.decimals(0, 2 * 10**5, places=6)  # used: exact, as every reader gives it


@st.composite
def subscriptions(draw: st.DrawFn) -> Subscription | None:
    if draw(st.booleans()):
        return None
    days = draw(st.integers(0, 30))
    return sub(draw(plans), draw(statuses), past_due_since=NOW - timedelta(days=days))


@given(subscriptions(), features, quantities, amounts)
def test_reason_is_from_the_closed_set_and_agrees_with_access(
    s: Subscription | None, feature: str, used: Decimal, amount: Decimal | None
) -> None:
    d = check(feature, s, used=used, amount=amount)
    assert d.reason in set(Reason)
    assert d.has_access == (d.reason not in DENIALS)
    body = d.as_dict()
    assert body["reason"] == d.reason.value and body["has_access"] == d.has_access


@given(subscriptions(), quantities, amounts)
def test_a_blocking_limit_is_never_passed(
    s: Subscription | None, used: Decimal, amount: Decimal | None
) -> None:
    d = check("api_calls", s, used=used, amount=amount)
    if d.overage == "block" and d.limit is not None and d.has_access:
        assert used + (amount or 0) <= d.limit
        assert amount is not None or used < d.limit
    if d.limit is not None and d.remaining is not None:
        assert d.remaining == max(0, d.limit - used)


@given(subscriptions(), quantities, st.decimals(0, 10**5, places=6))
def test_a_credit_never_takes_access_away(
    s: Subscription | None, used: Decimal, credit: Decimal
) -> None:
    without = check("api_calls", s, used=used)
    with_credit = check("api_calls", s, [grant("credit", credit)], used=used)
    assert with_credit.has_access or not without.has_access
