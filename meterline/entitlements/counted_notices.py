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
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from meterline.catalog import Catalog, Feature, Limit, Overage
from meterline.entitlements.decide import Evaluation, decide
from meterline.entitlements.periods import Period
from meterline.entitlements.thresholds import Notifier, possible, shown
from meterline.errors import NotFound

if TYPE_CHECKING:
    from meterline.entitlements.service import EntitlementService


@dataclass(frozen=True, slots=True)
class Watched:
    """A feature's terms for a customer, evaluated, that can still announce `names`."""

    meter: str
    period: Period
    ev: Evaluation
    percents: tuple[Limit, ...]
    names: list[str]
    start: str  # the period's start as notices key it


@dataclass(frozen=True, slots=True)
class Open:
    """A customer's feature with a notice left to announce this period."""

    customer: str
    watched: Watched
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
    batch = _Batch(service, notifier, tenant_id, catalog, service.clock.now())
    found = [o for c in unique for o in batch.open(c)]
    reads = [(o.customer, o.watched.meter, o.watched.period) for o in found]
    used = service.current_many(tenant_id, reads)
    notifier.announce_many([
        (tenant_id, o.customer, decide(o.watched.ev, u).as_dict(), o.watched.percents)
        for o, u in zip(found, used, strict=True) if _news(notifier, o, u)
    ])  # fmt: skip
    return len(found)


class _Batch:
    """One batch's evaluations, at one instant. A customer with neither subscription nor
    grants has the default plan's terms, the same for all: evaluated once per batch."""

    def __init__(
        self,
        service: EntitlementService,
        notifier: Notifier,
        tenant_id: int,
        catalog: Catalog,
        now: datetime,
    ) -> None:
        self._service, self._notifier = service, notifier
        self._tenant_id, self._catalog, self._now = tenant_id, catalog, now
        self._plain: dict[str, Watched | None] = {}

    def open(self, customer: str) -> Iterator[Open]:
        """`customer`'s metered features with a notice this process has not recorded."""
        data = self._service.plan_data(self._tenant_id, customer)
        plain = data.subscription is None and not data.grants
        for feature in self._catalog.features:
            if plain:
                if feature.key not in self._plain:
                    self._plain[feature.key] = self._watched(customer, feature)
                watched = self._plain[feature.key]
            else:
                watched = self._watched(customer, feature)
            if watched is None:
                continue
            key = (self._tenant_id, customer, feature.key, watched.start)
            if not self._notifier.knows(key, watched.names):
                yield Open(customer, watched, key)

    def _watched(self, customer: str, feature: Feature) -> Watched | None:
        """None for a feature that can announce nothing: not metered, not granted, unlimited,
        or neither `notify_at` nor an `allow` overage."""
        if feature.meter is None:
            return None
        ev = self._service.evaluate(self._tenant_id, customer, feature.key, self._now)
        terms, period = ev.terms, ev.period
        if terms is None or period is None or terms.limit is None:
            return None
        plan = ev.choice.plan.key if ev.choice.plan else None
        percents = self._service.thresholds(self._tenant_id, plan, feature.key)
        names = possible(percents, terms.overage is Overage.ALLOW)
        start = period.as_dict()["start"]
        return Watched(feature.meter, period, ev, percents, names, start) if names else None


def _news(notifier: Notifier, o: Open, used: Decimal) -> bool:
    """Whether a decision of `used` would show a notice this process has not recorded."""
    terms = o.watched.ev.terms
    assert terms is not None and terms.limit is not None
    allow = terms.overage is Overage.ALLOW
    names = shown(used, terms.limit, o.watched.percents, allow and used > terms.limit)
    return bool(names) and not notifier.knows(o.key, names)
