"""The notices of customers whose counted usage changed, decided many at once.

What the detector (`usage_notices.py`) asks of the service for each batch of touched customers
of one tenant (`EntitlementService.announce_usage`). The detector's cost is per customer it
looks at, so each step is done once per batch, not once per customer:

1. the plan data of the customers not cached: one pair of statements (`preload_plans`), then
   kept for the plan cache's TTL, so a customer whose usage keeps changing is read once;
2. per customer and feature, the evaluation from that plan data (pure: plan after payment
   policies, grants, period). A feature that can announce nothing (no `notify_at`, no `allow`
   overage) and one whose every possible notice of the period this process already recorded
   are dropped here, before any read: a customer past its last threshold costs no read;
3. the usage of the rest: one Redis pipeline of `reserve` probes for every additive meter
   (`current_many`; usage plus pending reservations, as consumes and checks count it);
4. only usage that shows a notice this process has not recorded (`thresholds.shown`, the same
   rule `reached` applies to a decision's body) is decided, and all the batch's new notices go
   to the ledger together (`Notifier.announce_many`: one transaction, its inserts and outbox
   messages pipelined). Most touched customers are below their next threshold: they cost the
   evaluation and their share of the pipeline, no decision, no body, no ledger call.

Why not skip the read too: the feed says which customers changed, not by how much (that would
be more work in the aggregator's step, the path with the 100k events/s target), so a customer
far from its next threshold is read like one about to cross it; the read is the pipeline's
share, a few microseconds.

What is kept: a notice is recorded through the same `Notifier` and ledger as before (once per
customer, feature, period and notice, whoever sees it first), and nothing here is remembered
across a restart that the ledger does not hold: a new process knows nothing, reads everyone
touched, and the ledger's key keeps each notice once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from meterline.catalog import Catalog, Limit, Overage
from meterline.entitlements.decide import Evaluation, decide
from meterline.entitlements.periods import Period
from meterline.entitlements.thresholds import Notifier, possible, shown
from meterline.errors import NotFound

if TYPE_CHECKING:
    from meterline.entitlements.service import EntitlementService


@dataclass(frozen=True, slots=True)
class Open:
    """A customer's feature with a notice left to announce this period, evaluated."""

    customer: str
    meter: str
    period: Period
    ev: Evaluation
    percents: tuple[Limit, ...]
    key: tuple[int, str, str, str]  # tenant, customer, feature, period start (`Notifier.knows`)


def announce_counted(service: EntitlementService, tenant_id: int, customers: Sequence[str]) -> int:
    """Record the notices `customers`' usage shows (module docstring); how many features'
    usage was read. A tenant without a catalog, or a service without a notifier, reads none."""
    notifier = service.notifier
    if notifier is None:
        return 0
    try:
        catalog = service.catalog(tenant_id)
    except NotFound:
        return 0
    unique = list(dict.fromkeys(customers))
    service.preload_plans(tenant_id, unique)
    found = [o for c in unique for o in _open(service, notifier, tenant_id, c, catalog)]
    reads = [(o.customer, o.meter, o.period) for o in found]
    used = service.current_many(tenant_id, reads)
    notifier.announce_many([
        (tenant_id, o.customer, decide(o.ev, u).as_dict(), o.percents)
        for o, u in zip(found, used, strict=True) if _news(notifier, o, u)
    ])  # fmt: skip
    return len(found)


def _open(
    service: EntitlementService, notifier: Notifier, tenant_id: int, customer: str, catalog: Catalog
) -> Iterator[Open]:
    """`customer`'s metered features with a notice this process has not recorded."""
    for feature in catalog.features:
        if feature.meter is None:
            continue
        ev = service.evaluate(tenant_id, customer, feature.key)
        if ev.terms is None or ev.period is None or ev.terms.limit is None:
            continue  # not granted, or unlimited: nothing to reach
        plan = ev.choice.plan
        percents = service.thresholds(tenant_id, plan.key if plan else None, feature.key)
        names = possible(percents, ev.terms.overage is Overage.ALLOW)
        key = (tenant_id, customer, feature.key, ev.period.as_dict()["start"])
        if names and not notifier.knows(key, names):
            yield Open(customer, feature.meter, ev.period, ev, percents, key)


def _news(notifier: Notifier, o: Open, used: Decimal) -> bool:
    """Whether a decision of `used` would show a notice this process has not recorded."""
    assert o.ev.terms is not None and o.ev.terms.limit is not None
    limit = o.ev.terms.limit
    names = shown(used, limit, o.percents, o.ev.terms.overage is Overage.ALLOW and used > limit)
    return bool(names) and not notifier.knows(o.key, names)
