"""What the oracle checks after a run: invoices to the cent, a clean reconciliation, and the
faults it injects into Stripe's records found with their kind and money.

Expectations come from the stories and the calculator; what is observed comes from the
emulator (invoices, meter events) and the reporter's alerts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from meterline.stripe.catalog_sync import meter_event_name
from tests.reporter.oracle.calculator import ceil_minute, cents, units_between
from tests.reporter.oracle.simulation import METER, Customer, Sim
from tests.reporter.oracle.stories import PRICES, Story, invoice, moved, split

HOUR = timedelta(hours=1)
Expected = tuple[str, str, datetime, Decimal, Decimal]  # kind, customer, hour, difference, money


def days_with_usage(sim: Sim) -> list[date]:
    first = min(e.ts for c in sim.customers.values() for e in c.story.events)
    days, day = [], first.date()
    while day <= sim.clock.now().date():
        days.append(day)
        day += timedelta(days=1)
    return days


def reconcile(sim: Sim, days: list[date]) -> list[Any]:
    results = []
    for day in days:
        results += sim.reporter.reconcile(day, "manual")
    return results


def clean_run(sim: Sim) -> list[str]:
    """Problems of the clean run: reconciliation must find nothing, and the only alerts are
    the `split_after_push` of changes learned too late to cancel: per such customer, the
    units moved billed on the old plan's side and, after a plan change (not a cancellation),
    lacking on the new plan's side."""
    found = [d for r in reconcile(sim, days_with_usage(sim)) for d in r.discrepancies]
    problems = [f"{d}\n  {_story_of(sim, d.customer)}" for d in found]
    alerts = sim.reporter.store.alerts(sim.tenant_id, "open")
    want = {c.story.key: _split_differences(c.story, sim.pushes) for c in sim.customers.values()}
    got: dict[str, list[Decimal]] = {}
    for a in alerts:
        got.setdefault(a.customer, []).append(a.difference)
    got = {k: sorted(v) for k, v in got.items()}
    want = {k: v for k, v in want.items() if v}
    if got != want or {a.kind for a in alerts} - {"split_after_push"}:
        found = [(a.kind, a.customer, a.difference, a.detail) for a in alerts]
        problems.append(f"alerts {found}, want splits {want}")
    return problems


def _split_differences(story: Story, pushes: list[datetime]) -> list[Decimal]:
    units = Decimal(moved(story, pushes))
    if not units:
        return []
    return [units] if story.canceled else [-units, units]


def _story_of(sim: Sim, key: str) -> str:
    """What a failure report needs to replay a customer: its story, rows and boundaries."""
    story = sim.customers[key].story
    with sim.pool.connection() as conn:
        rows = conn.execute(
            "SELECT slot_start, revision, value, status, created_at, sent_at FROM report_ledger "
            "WHERE tenant_id = %s AND customer = %s ORDER BY slot_start, revision",
            (sim.tenant_id, key),
        ).fetchall()
        bounds = conn.execute(
            "SELECT at FROM report_boundaries WHERE tenant_id = %s AND customer = %s ORDER BY at",
            (sim.tenant_id, key),
        ).fetchall()
        contexts = conn.execute(
            "SELECT since, plan FROM report_contexts WHERE tenant_id = %s AND customer = %s "
            "ORDER BY since",
            (sim.tenant_id, key),
        ).fetchall()
    return f"{story}\n  rows {rows}\n  bounds {bounds}\n  contexts {contexts}"


def charged(sim: Sim, found: dict[str, Any]) -> dict[str, int]:
    plans = {price: plan for plan, price in sim.prices.items()}
    out: dict[str, int] = {}
    for line in sim.client.v1.invoices.line_items.list(found["id"]).data:
        plan = plans.get(line["pricing"]["price_details"]["price"])
        if plan is not None and line["amount"]:
            out[plan] = out.get(plan, 0) + int(line["amount"])
    return out


def invoice_problems(sim: Sim) -> list[str]:
    """Each period's invoice against the calculator, to the cent; a period a cancellation
    ended without an invoice by the units Stripe holds before the cancellation."""
    problems = []
    for c in sim.customers.values():
        for period in (1, 2):
            if period in c.invoices:
                sim.figures.invoices_checked += 1
                got, want = charged(sim, c.invoices[period]), invoice(c.story, sim.pushes, period)
                if got != want:
                    problems.append(f"{c.story.key} invoice {period}: {got} != {want}")
            elif _ended_by_cancel(c, period):
                sim.figures.periods_checked_by_units += 1
                problems += _held_problems(sim, c, period)
            else:
                continue
            sim.figures.customer_periods += 1
    return problems


def _ended_by_cancel(c: Customer, period: int) -> bool:
    """A cancellation ended this period before its invoice (it started before the cancel)."""
    story = c.story
    if not story.canceled or story.change is None or story.period_end is None:
        return False
    return period == 1 or story.change[1] >= story.period_end


def _held_problems(sim: Sim, c: Customer, period: int) -> list[str]:
    """Stripe holds, stamped in the period before the cancellation, exactly the usage of the
    period before the split (the minute of the cancel, or the end of its hour if too late)."""
    story = c.story
    assert story.change is not None and story.period_end is not None
    at, end = story.change[1].timestamp(), story.period_end.timestamp()
    lo, hi = (0.0, min(at, end)) if period == 1 else (end, at)
    events = sim.control.meter_events(
        event_name=meter_event_name(sim.tenant_id, METER), customer=c.stripe_id, status="accepted"
    )
    held = sum(Decimal(e["value"]) for e in events if lo <= e["timestamp"] < hi)
    edge, cut = ceil_minute(story.period_end), split(story, sim.pushes)
    assert cut is not None
    start, stop = (None, min(edge, cut)) if period == 1 else (edge, cut)
    want = units_between(story.usage(), start, stop)
    return [] if held == want else [f"{story.key} period {period} held {held} != {want}"]


@dataclass
class Fault:
    kind: str  # drop | duplicate | change | shift
    customer: Customer
    record: dict[str, Any]


def inject(sim: Sim, rng: random.Random, n: int) -> list[Expected]:
    """`n` faults in Stripe's records of distinct customers (without plan changes), in hours
    no boundary splits; returns the alerts reconciliation must raise for them."""
    expected: list[Expected] = []
    pool = [c for c in sim.customers.values() if c.story.change is None]
    for c in rng.sample(pool, min(n, len(pool))):
        records = _records(sim, c)
        kind = rng.choice(["drop", "duplicate", "change", "shift"])
        usable = [r for r in records if _free_hours(c, r, 2 if kind == "shift" else 1)]
        if not usable:
            continue
        expected += _apply(sim, rng, Fault(kind, c, rng.choice(usable)), records)
        sim.figures.faults_injected += 1
    return expected


def _records(sim: Sim, c: Customer) -> list[dict[str, Any]]:
    name = meter_event_name(sim.tenant_id, METER)
    return [
        r for r in sim.emulator.store.meter_events
        if r["event_name"] == name and r["customer"] == c.stripe_id and r["status"] == "accepted"
    ]  # fmt: skip


def _hour(record: dict[str, Any]) -> datetime:
    ts = datetime.fromtimestamp(record["timestamp"], UTC)
    return ts.replace(minute=0, second=0, microsecond=0)


def _free_hours(c: Customer, record: dict[str, Any], hours: int) -> bool:
    """No billing boundary inside the record's hour (nor the next, for a shift)."""
    assert c.story.period_end is not None
    start = _hour(record)
    edge = ceil_minute(c.story.period_end)
    return not start < edge < start + HOUR * hours


def _values(records: list[dict[str, Any]], hour: datetime) -> list[Decimal]:
    return [Decimal(r["value"]) for r in records if _hour(r) == hour]


def _apply(sim: Sim, rng: random.Random, fault: Fault, records: list[dict[str, Any]]
           ) -> list[Expected]:  # fmt: skip
    r, c = fault.record, fault.customer
    hour, value = _hour(r), Decimal(r["value"])
    store = sim.emulator.store
    if fault.kind == "drop":
        r["status"] = "dropped"
        store.identifiers.pop(r["identifier"], None)
        return [_expect(c, "missing_in_stripe", hour, -value)]
    if fault.kind == "duplicate":
        store.meter_events.append({**r, "identifier": f"someone-else-{r['identifier']}"})
        return [_expect(c, "extra_in_stripe", hour, value)]
    if fault.kind == "change":
        k = Decimal(rng.randint(1, 9))
        kind = "extra_in_stripe" if k in _values(records, hour) else "value_mismatch"
        r["value"] = str(value + k)
        return [_expect(c, kind, hour, k)]
    later = _values(records, hour + HOUR)
    r["timestamp"] += 3600
    kind = "extra_in_stripe" if not later or value in later else "value_mismatch"
    return [_expect(c, "missing_in_stripe", hour, -value), _expect(c, kind, hour + HOUR, value)]


def _expect(c: Customer, kind: str, hour: datetime, difference: Decimal) -> Expected:
    """The alert for `difference` units in `hour`: its money is the period's invoice line at
    the expected usage against the line at the usage Stripe now holds."""
    story = c.story
    assert story.period_end is not None
    edge = ceil_minute(story.period_end)
    start, end = (None, edge) if hour < edge else (edge, None)
    expected = units_between(story.usage(), start, end)
    price = PRICES[story.plan]
    money = abs(cents(price, expected) - cents(price, expected + difference))
    return kind, story.key, hour, difference, Decimal(money)


def fault_problems(sim: Sim, expected: list[Expected]) -> list[str]:
    """Reconcile the faults' days again: the alerts opened must be exactly the expected ones."""
    days = sorted({e[2].date() for e in expected})
    opened = [i for r in reconcile(sim, days) for i in r.opened]
    alerts = [sim.reporter.store.alert(sim.tenant_id, i) for i in opened]
    got = {
        (a.kind, a.customer, a.window_start, a.difference, Decimal(a.money_minor or 0))
        for a in alerts
    }
    want = set(expected)
    sim.figures.faults_found = sim.figures.faults_injected - len({e[1] for e in want - got})
    problems = [f"missed {e}" for e in sorted(want - got)]
    problems += [f"unexpected {a}" for a in sorted(got - want)]
    return problems
