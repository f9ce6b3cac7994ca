"""Entitlement notices: which thresholds an answer reached, announced once each.

`notices(tenant_id, customer, body, percents)` reads a decision body (a consume's stored
answer: `used` after the grant, `limit` of plan + grants, `period`, `overage`, `reason`,
`granted`; or a plain check's decision, which has no `granted`) and
returns every notice it shows: `threshold:<p>` for each catalog percentage `p` that `used`
has reached, and `limit_exceeded` for a blocking refusal or an `allow` overage past the limit.
It returns all reached ones, not only those this consume crossed, so a retry, a limit that
dropped (a credit grant that expired) or a racing consume's lost notice is made up by the
next answer; the `NoticeLedger` keeps each one to a single announcement per period (in
Postgres a primary key, written in the outbox's transaction). `Notifier` remembers what it
recorded, so an answer whose notices are all known costs no round trip.

Thresholds:

`entitlement.threshold_reached` (customer, feature, threshold, used, limit, period, plan,
overage) is announced once per customer, feature, period and catalog percentage (`notify_at`,
meterline/catalog/README.md); `entitlement.limit_exceeded` once per customer, feature and
period, when a consume is refused at a blocking limit (a 403 `limit_exceeded`) or a granted
`allow` consume takes usage past the limit.

**Where detection runs: in the entitlements service, not in the aggregator.** Every consume
answer (and every repeat of it), every plain check the service decides (not cached), and every
decision of the detector of counted usage (`usage_notices.py`: the customers whose usage a
batch changed, marked by the aggregator in the view, decided about once a second) is read for
the notices it shows: each percentage whose share of the *effective* limit (plan + grants, at
that instant) `used` has reached. The reasons:
- A threshold is a fraction of a limit, and the limit is a decision: plan after payment
  policies, the subscription's billing period, grants valid at that instant. The
  entitlements service holds all of it (cached per customer); the aggregator holds none, and
  would have to load subscriptions and grants per customer of every batch, on the path whose
  target is 100k events/s.
- A consume sees its own reservation at once (`used` after the grant, from the Lua step), so
  the 100% notice goes out with the grant that reaches it, before the event is even counted;
  the aggregator would only see it after Kafka and a batch.
- Usage that never passes a consume (ingested events) is seen by the detector once the
  aggregator has counted it (and by the next plain check); limits that move (a credit that
  expires or is voided: "a grant running out") are seen by the next decision, since each
  answer announces *all* reached notices, not only those it crossed.
- The aggregator runs no threshold code: its share is one ZADD per 500 distinct customers in
  the batch's existing Lua call (bench/bench_thresholds.py: its sustained rate with the marks
  and the detector on beside off, and what a consume pays).

**Once, also when consumes race.** `Notifier` keeps the keys it recorded (bounded memo): an
answer whose notices are all known costs no round trip. Unknown ones go to the
`NoticeLedger`: in Postgres one transaction per answer (per batch of answers for the
detector, `announce_many`) inserts the notices into `entitlement_notices` (primary key tenant,
customer, feature, period start, notice) in one `INSERT … ON CONFLICT DO NOTHING RETURNING`,
and writes the outbox messages (`meterline.notify.outbox.publish_many`) only for the rows it
inserted. Racing consumes each try;
the key lets exactly one announce. The message id derives from the same key, so the
dispatcher's receivers dedupe even a replay.

**Failures.** Notices are written after the answer is stored and the event published. If
writing them fails, a consume answers 503 (the answer stands; the retry with the same
`event_id` returns it and writes the notices); a check only logs (the next deciding check
writes them); the detector keeps the customer marked and tries again at its next pass. A limit
that drops with no usage (a grant expiring) is announced at the customer's next decision.
"""

from __future__ import annotations

import abc
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeAlias

from meterline.catalog import Limit
from meterline.notify.events import Notification

LIMIT_EXCEEDED = "limit_exceeded"
EXCEEDED_TYPE, REACHED_TYPE = "entitlement.limit_exceeded", "entitlement.threshold_reached"
MEMO_SIZE = 100_000
NoticeKey: TypeAlias = tuple[int, str, str, str, str]
Answer: TypeAlias = tuple[int, str, Mapping[str, Any], Sequence[Limit]]
"""What `Notifier.announce_many` reads: tenant, customer, a decision's body, its percentages."""


@dataclass(frozen=True, slots=True)
class Notice:
    """One announcement: its unique key (tenant, customer, feature, period start, notice) and
    the notification written for it."""

    tenant_id: int
    customer: str
    feature: str
    period_start: str
    notice: str
    notification: Notification

    @property
    def key(self) -> NoticeKey:
        return self.tenant_id, self.customer, self.feature, self.period_start, self.notice


def notices(
    tenant_id: int, customer: str, body: Mapping[str, Any], percents: Sequence[Limit]
) -> list[Notice]:
    """The notices a decision body shows (empty for an unlimited feature)."""
    return [notice(tenant_id, customer, body, name) for name in reached(body, percents)]


def reached(body: Mapping[str, Any], percents: Sequence[Limit]) -> list[str]:
    """The names of the notices `body` shows: `threshold:<p>` ascending, then `limit_exceeded`."""
    limit, used, period = body.get("limit"), body.get("used"), body.get("period")
    if limit is None or used is None or not period:
        return []
    return shown(used, limit, percents, _exceeded(body))


def shown(
    used: Decimal | float, limit: Decimal | float, percents: Sequence[Limit], exceeded: bool
) -> list[str]:
    """The notices of `used` against `limit` (what `reached` lists for a body with them):
    `threshold:<p>` ascending, then `limit_exceeded` when `exceeded`. The detector asks it
    before it builds a decision, so that only usage showing something new costs one."""
    names = [f"threshold:{p}" for p in percents if _reached(used, limit, p)]
    return [*names, LIMIT_EXCEEDED] if exceeded else names


def possible(percents: Sequence[Limit], allow: bool) -> list[str]:
    """Every notice a feature can still show a detector: its thresholds, and `limit_exceeded`
    for an `allow` overage (a blocking limit is exceeded only by a refused consume)."""
    names = [f"threshold:{p}" for p in percents]
    return [*names, LIMIT_EXCEEDED] if allow else names


def key_of(tenant_id: int, customer: str, body: Mapping[str, Any], name: str) -> NoticeKey:
    return tenant_id, customer, body["feature"], body["period"]["start"], name


def _reached(used: Decimal | float, limit: Decimal | float, percent: Limit) -> bool:
    return limit > 0 and _exact(used) * 100 >= _exact(limit) * Decimal(percent)


def _exact(number: Decimal | float) -> Decimal:
    return Decimal(repr(number)) if isinstance(number, float) else Decimal(number)


def _exceeded(body: Mapping[str, Any]) -> bool:
    if body.get("granted") is False:
        return body.get("reason") == "limit_exceeded"
    return body.get("overage") == "allow" and _exact(body["used"]) > _exact(body["limit"])


def notice(tenant_id: int, customer: str, body: Mapping[str, Any], name: str) -> Notice:
    """The notice `name` of `body`, with the notification it announces (id from its key)."""
    feature, period = body["feature"], body["period"]
    extra: dict[str, Any] = {}
    if name.startswith("threshold:"):
        percent = Decimal(name.removeprefix("threshold:"))
        extra["threshold"] = int(percent) if percent == int(percent) else float(percent)
    data = {
        "customer": customer, "feature": feature, **extra, "used": body["used"],
        "limit": body["limit"], "overage": body.get("overage"), "plan": body.get("plan"),
        "period": {"start": period["start"], "end": period["end"]},
    }  # fmt: skip
    kind = EXCEEDED_TYPE if name == LIMIT_EXCEEDED else REACHED_TYPE
    at = datetime.fromisoformat(body["as_of"])
    key = "\x1f".join((customer, feature, period["start"], name))
    notification = Notification(tenant_id, kind, at, data, customer, key=key)
    return Notice(tenant_id, customer, feature, period["start"], name, notification)


class NoticeLedger(abc.ABC):
    """Each notice announced once: `record` writes the notices not recorded before, each with
    its outbox message, atomically; a notice already recorded (by anyone) writes nothing."""

    @abc.abstractmethod
    def record(self, found: Sequence[Notice]) -> int:
        """Record `found`; the number that were new (and so announced)."""


class MemoryNoticeLedger(NoticeLedger):
    """The in-memory twin: `announced` lists the notifications in the order recorded."""

    def __init__(self) -> None:
        self._keys: set[NoticeKey] = set()
        self._lock = threading.Lock()
        self.announced: list[Notification] = []

    def record(self, found: Sequence[Notice]) -> int:
        new = 0
        with self._lock:
            for n in found:  # a key twice in `found`: the first is announced
                if n.key not in self._keys:
                    self._keys.add(n.key)
                    self.announced.append(n.notification)
                    new += 1
        return new


class Notifier:
    """`announce` a consume's answer: records its notices not yet known to this process."""

    def __init__(self, ledger: NoticeLedger, memo_size: int = MEMO_SIZE) -> None:
        self._ledger = ledger
        self._known: OrderedDict[NoticeKey, None] = OrderedDict()
        self._memo_size = memo_size
        self._lock = threading.Lock()

    def announce(
        self, tenant_id: int, customer: str, body: Mapping[str, Any], percents: Sequence[Limit]
    ) -> None:
        self.announce_many([(tenant_id, customer, body, percents)])

    def announce_many(self, answers: Sequence[Answer]) -> None:
        """`announce` of each (tenant, customer, body, percents), their unknown notices recorded
        in one `record` call (one transaction), in key order: two writers of overlapping
        batches then take the ledger's row locks in one order."""
        found = [notice(t, c, body, name) for t, c, body, names in self._unknown(answers)
                 for name in names]  # fmt: skip
        if found:
            found.sort(key=lambda n: n.key)
            self._ledger.record(found)
            self._remember(n.key for n in found)

    def _unknown(self, answers: Sequence[Answer]) -> Iterator[tuple[int, str, Any, list[str]]]:
        for tenant_id, customer, body, percents in answers:
            names = reached(body, percents)
            with self._lock:
                unknown = [
                    n for n in names if key_of(tenant_id, customer, body, n) not in self._known
                ]
            if unknown:
                yield tenant_id, customer, body, unknown

    def knows(self, key: tuple[int, str, str, str], names: Sequence[str]) -> bool:
        """Whether this process recorded every notice `names` of (tenant, customer, feature,
        period start): then no decision can show one left to announce."""
        with self._lock:
            return all((*key, name) in self._known for name in names)

    def _remember(self, keys: Iterable[NoticeKey]) -> None:
        with self._lock:
            for key in keys:
                self._known[key] = None
            while len(self._known) > self._memo_size:
                self._known.popitem(last=False)
