"""Validation of the billing sections: `credit_packs` (one-time purchases that add credits to
features) and `plan_changes` (`over_limit: block | allow_until_reset`, default block).

```yaml
credit_packs:
  - key: calls_10k
    name: 10,000 API calls
    price: {amount: 1500, currency: usd}
    credits: {api_calls: 10000}
```
Each credited feature must be a declared metered feature and each amount a number > 0; a pack
credits at least one feature. Problems carry their path like the rest of the catalog.
"""

from __future__ import annotations

from meterline.catalog import _reading as rd
from meterline.catalog._reading import Context, Entry, Invalid, Path
from meterline.catalog.model import (
    CreditPack,
    FeatureKind,
    Limit,
    OneTimePrice,
    OverLimit,
    PlanChangePolicy,
)


def credit_pack(ctx: Context, raw: object, path: Path) -> CreditPack | None:
    entry = Entry(ctx, raw, path, ("key", "price", "credits"), ("name",))
    price = _price(ctx, entry.fields["price"], (*path, "price")) if entry.has("price") else None
    credits = _credits(ctx, entry.fields.get("credits"), (*path, "credits"))
    pack = CreditPack(
        key=entry.get("key", rd.key, ""),
        name=entry.get("name", rd.name, None),
        price=price or OneTimePrice(0, "usd"),
        credits=credits,
    )
    return None if entry.failed else pack


def _price(ctx: Context, raw: object, path: Path) -> OneTimePrice | None:
    entry = Entry(ctx, raw, path, ("amount", "currency"))
    price = OneTimePrice(
        amount=entry.get("amount", rd.integer(1, rd.MAX_PRICE_AMOUNT), 0),
        currency=entry.get("currency", rd.currency, ""),
    )
    return None if entry.failed else price


def _credits(ctx: Context, raw: object, path: Path) -> dict[str, Limit]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not raw:
        ctx.fail(path, "must be a non-empty mapping of metered feature keys to credit amounts")
        return {}
    credits: dict[str, Limit] = {}
    for key, value in raw.items():
        where = (*path, str(key))
        if ctx.features.get(str(key)) is not FeatureKind.METERED:
            metered = [k for k, kind in ctx.features.items() if kind is FeatureKind.METERED]
            ctx.fail(where, f"not a metered feature; metered features: {rd.one_of(metered)}")
            continue
        try:
            credits[str(key)] = _amount(value)
        except Invalid as problem:
            ctx.fail(where, str(problem))
    return credits


def _amount(value: object) -> Limit:
    problem = "must be a number > 0 (the units one purchase adds)"
    try:
        amount = rd.limit(value)
    except Invalid:
        raise Invalid(problem) from None
    if amount is None or amount <= 0:
        raise Invalid(problem)
    return amount


def plan_changes(ctx: Context, raw: object) -> PlanChangePolicy:
    if raw is None:
        return PlanChangePolicy()
    entry = Entry(ctx, raw, ("plan_changes",), optional=("over_limit",))
    policy = PlanChangePolicy(entry.get("over_limit", rd.choice(OverLimit), OverLimit.BLOCK))
    return PlanChangePolicy() if entry.failed else policy
