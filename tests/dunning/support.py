"""Dunning test kit: invoices as Stripe would say them, and a service on in-memory twins."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from meterline.clock import FakeClock
from meterline.dunning import Dunning, DunningPolicy, DunningPorts, InvoiceFacts
from meterline.dunning.repository import DunningRepository, MemoryDunningRepository
from meterline.entitlements import MemoryCustomerRepository, MemorySubscriptionRepository
from meterline.entitlements.model import Subscription
from meterline.errors import Unavailable
from meterline.stripe.webhook_events import StripeEvent
from tests.entitlements.catalogs import example_catalog

T0 = datetime(2027, 3, 1, 12, tzinfo=UTC)
DAY = timedelta(days=1)
RETRY_DAYS = (3, 5, 6, 7)  # the emulator's default schedule: final attempt on day 21


def invoice(attempts: int, status: str = "open", at: datetime = T0) -> InvoiceFacts:
    """`in_1` after `attempts` failed attempts (the first at `at`), on the default schedule."""
    nxt = None
    if status == "open" and attempts <= len(RETRY_DAYS):
        nxt = at + sum(RETRY_DAYS[:attempts]) * DAY
    return InvoiceFacts("in_1", "cus_1", "sub_1", status, attempts, nxt,
                        "https://pay.example/in_1", 4900, "usd")  # fmt: skip


@dataclass
class Invoices:
    """What Stripe says of each invoice; `down` makes every read fail as Stripe being away."""

    now: dict[str, InvoiceFacts] = field(default_factory=dict)
    down: bool = False

    def facts(self, invoice_id: str) -> InvoiceFacts | None:
        if self.down:
            raise Unavailable("Stripe is away")
        return self.now.get(invoice_id)


@dataclass
class Kit:
    dunning: Dunning
    repo: DunningRepository
    invoices: Invoices
    subs: MemorySubscriptionRepository
    clock: FakeClock
    policy: DunningPolicy
    tenant_id: int = 1
    messages: Callable[[], list[tuple[str, str | None]]] | None = None

    def event(self, type_: str, facts: InvoiceFacts, at: datetime, n: int = 0) -> StripeEvent:
        nxt = facts.next_payment_attempt
        parent = {"subscription_details": {"subscription": facts.subscription_id}}
        obj = {"id": facts.id, "object": "invoice", "customer": facts.stripe_customer,
               "status": facts.status, "attempt_count": facts.attempt_count,
               "next_payment_attempt": None if nxt is None else int(nxt.timestamp()),
               "hosted_invoice_url": facts.update_url, "amount_due": facts.amount_due,
               "currency": facts.currency, "parent": parent}  # fmt: skip
        return StripeEvent(f"evt_{type_}_{n}", type_, int(at.timestamp()), obj, "sub_1")

    def stripe_says(self, facts: InvoiceFacts, status: str) -> None:
        """Stripe's invoice and the subscription status the sync stored."""
        self.invoices.now[facts.id] = facts
        sub = self.subs.get(self.tenant_id, "c1")
        assert sub is not None
        self.subs.put(replace(sub, status=status))

    def fail(self, attempts: int, status: str = "past_due") -> None:
        facts = invoice(attempts)
        self.stripe_says(facts, status)
        at = T0 + sum(RETRY_DAYS[: attempts - 1]) * DAY
        self.clock_to(at)
        self.dunning.on_event(self.event("invoice.payment_failed", facts, at, attempts))

    def pay(self, at: datetime) -> None:
        facts = replace(invoice(1), status="paid", next_payment_attempt=None)
        self.stripe_says(facts, "active")
        self.clock_to(at)
        self.dunning.on_event(self.event("invoice.paid", facts, at))

    def clock_to(self, at: datetime) -> None:
        self.clock.advance((at - self.clock.now()).total_seconds())

    def published(self) -> list[tuple[str, str | None]]:
        """(event type, step) of every notification written, in order."""
        if self.messages is not None:
            return self.messages()
        assert isinstance(self.repo, MemoryDunningRepository)
        return [(n.type, n.data.get("step")) for n in self.repo.published.values()]


def make_kit(
    repo: DunningRepository | None = None,
    policy: DunningPolicy | None = None,
    tenant_id: int = 1,
    messages: Callable[[], list[tuple[str, str | None]]] | None = None,
) -> Kit:
    """Customer `c1` of `tenant_id` (Stripe `cus_1`) on Basic, subscription `sub_1`."""
    policy = policy or DunningPolicy()
    repo = repo or MemoryDunningRepository(policy)
    customers, subs = MemoryCustomerRepository(), MemorySubscriptionRepository()
    customers.create(tenant_id, "c1", None, None)
    customers.set_stripe_id(tenant_id, "c1", "cus_1")
    subs.put(Subscription(tenant_id, "c1", "basic", "active", "stripe", "sub_1"))
    invoices, clock = Invoices(), FakeClock(T0)
    catalog = example_catalog()
    ports = DunningPorts(repo, invoices, customers, subs, lambda _t: catalog, policy, clock)
    return Kit(Dunning(ports), repo, invoices, subs, clock, policy, tenant_id, messages)
