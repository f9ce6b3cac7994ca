"""Emulator configuration: every behaviour STRIPE.md marks unverified is a field here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

API_VERSION = "2026-10-28.endive"
DAY = 86_400
LAST_TIE_BREAKS = ("latest_received", "earliest_received")


@dataclass(frozen=True)
class WebhookConfig:
    """How webhook deliveries behave.

    `max_attempts` counts the first try; retry `n` waits `retry_base_seconds * 2**(n-1)`
    capped at `retry_max_seconds`. `out_of_order_jitter_seconds` delays each delivery by a
    seeded random amount in [0, jitter] so deliveries can overtake each other, and
    `duplicate_rate` is the seeded probability of delivering an event a second time.
    """

    max_attempts: int = 5
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 60.0
    timeout_seconds: float = 5.0
    out_of_order_jitter_seconds: float = 0.0
    duplicate_rate: float = 0.0


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything the emulator needs at start-up; frozen, passed down from `__main__`.

    `meter_processing_delay` is how long (emulator-clock seconds) a meter event waits before
    summaries reflect it. `sync_meter_event_validation` makes unknown meters or customers a
    synchronous 400 on v1/v2 meter events instead of an asynchronous error recorded on the
    event (Stripe's behaviour is unverified). `omit_empty_summaries` drops summaries whose
    window holds no event; `summaries_newest_first` orders them as Stripe's example does.
    `last_tie_break` decides which of several events with the same timestamp a `last` meter
    bills: `latest_received` or `earliest_received` (Stripe does not document it).
    `payment_retry_days` spaces the automatic retries of a failed invoice (days after the
    previous attempt; Stripe's default policy is "4 retries over 21 days", its spacing is not
    documented); once they are spent the subscription becomes `final_payment_failure`
    (`unpaid` or `canceled`, a Stripe setting).
    """

    seed: int = 0
    state_file: Path | None = None
    meter_processing_delay: float = 0.0
    session_ttl_seconds: int = 15 * 60
    identifier_dedupe_seconds: int = DAY
    adjustment_window_seconds: int = DAY
    past_window_seconds: int = 35 * DAY
    future_window_seconds: int = 300
    max_significant_digits: int = 15
    sync_meter_event_validation: bool = False
    require_known_customer: bool = False
    omit_empty_summaries: bool = True
    summaries_newest_first: bool = True
    last_tie_break: str = "latest_received"
    idempotency_ttl_seconds: int = DAY
    payment_retry_days: tuple[float, ...] = (3.0, 5.0, 6.0, 7.0)
    final_payment_failure: str = "unpaid"
    max_logged_requests: int = 10_000
    amount_rounding: str = "half_up"
    round_each_tier: bool = False
    tier_flat_amount_at_zero_usage: bool = True
    package_line_quantity: str = "usage"
    unexpanded_tiers: str = "omit"
    api_version: str = API_VERSION
    webhooks: WebhookConfig = field(default_factory=WebhookConfig)

    def validate(self) -> list[str]:
        """Return every problem with this configuration at once (empty when valid)."""
        problems: list[str] = []
        if self.meter_processing_delay < 0:
            problems.append("meter_processing_delay must be >= 0")
        if self.session_ttl_seconds <= 0:
            problems.append("session_ttl_seconds must be > 0")
        if self.webhooks.max_attempts < 1:
            problems.append("webhooks.max_attempts must be >= 1")
        if not 0 <= self.webhooks.duplicate_rate <= 1:
            problems.append("webhooks.duplicate_rate must be within [0, 1]")
        if self.last_tie_break not in LAST_TIE_BREAKS:
            problems.append(f"last_tie_break must be one of {', '.join(LAST_TIE_BREAKS)}")
        if any(days <= 0 for days in self.payment_retry_days):
            problems.append("payment_retry_days must all be > 0")
        if self.max_significant_digits < 1:
            problems.append("max_significant_digits must be >= 1")
        choices = (
            ("amount_rounding", self.amount_rounding, ("half_up", "half_even")),
            ("package_line_quantity", self.package_line_quantity, ("usage", "packages")),
            ("unexpanded_tiers", self.unexpanded_tiers, ("omit", "null")),
            ("final_payment_failure", self.final_payment_failure, ("unpaid", "canceled")),
        )
        for name, value, allowed in choices:
            if value not in allowed:
                problems.append(f"{name} must be one of {', '.join(allowed)}")
        return problems
