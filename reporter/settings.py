"""`ReporterSettings`: the reporter's section (`METERLINE_REPORTER_*`), read once in `__main__`."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ReporterSettings(BaseSettings):
    """How often the reporter pushes and reconciles, and how hard it may press on Stripe.

    `settle_s`: a slot is pushed once it ended this long ago (the aggregator's lag).
    `lookback_hours`: each push recomputes this many past hours, so late events become
    corrections; events later than that are found through the ledger's receive time
    (`late_scan_s`). `stripe_window_margin_s`: usage older than Stripe's 35 days minus this
    margin is never sent and raises a `too_late_for_stripe` alert. `stripe_lag_s`: hours that
    ended more recently than this are not reconciled (Stripe summarizes asynchronously).
    `flush_wait_s`: how long the period-end flush waits for the aggregator to pass a boundary
    before it alerts (`flush_blocked`) and flushes anyway. `tick_s`: how often the scheduler
    wakes, and so how soon a standby replica takes the schedule over from a dead leader.
    `crash_after_send` is a fault-injection hook for tests only: the probability that the
    process kills itself with SIGKILL right after a Stripe call, before the ledger update
    (`crash_seed` makes the draws repeatable).

    /finance sessions: `cookie_secure` is `auto` (the cookie is `Secure` when the request came
    over HTTPS, directly or with `X-Forwarded-Proto: https`), `true` or `false`. A session
    ends after `session_idle_s` without a request and `session_max_s` after sign-in.
    `public_url` (the address people open, used in alert links) is also an origin /finance
    accepts posts from: set it behind a proxy that does not pass the browser's `Host`.
    """

    model_config = SettingsConfigDict(env_prefix="METERLINE_REPORTER_", extra="ignore", frozen=True)

    push_interval_s: int = 3600
    settle_s: int = 120
    lookback_hours: int = 48
    late_scan_s: int = 3 * 3600
    stripe_window_margin_s: int = 3600
    stream_threshold: int = 200
    push_batch: int = 1000
    meter_event_rate: float = 500.0
    stream_rate: float = 1000.0
    summary_rate: float = 80.0
    summary_workers: int = 4
    retry_max_attempts: int = 8
    retry_base_s: float = 0.5
    retry_max_s: float = 30.0
    reconcile_hour_utc: int = 2
    stripe_lag_s: int = 900
    flush_wait_s: int = 1800
    scheduler_enabled: bool = True
    tick_s: float = 15.0
    notify_webhook_url: str | None = None
    public_url: str = ""
    cookie_secure: Literal["auto"] | bool = "auto"
    session_idle_s: int = 3600
    session_max_s: int = 12 * 3600
    crash_after_send: float = 0.0
    crash_seed: int | None = None

    @model_validator(mode="after")
    def _check(self) -> ReporterSettings:
        problems = []
        if self.push_interval_s < 10:
            problems.append("push_interval_s must be >= 10")
        if not 0.1 <= self.tick_s <= 60:
            problems.append("tick_s must be within [0.1, 60]")
        if not 0 <= self.reconcile_hour_utc <= 23:
            problems.append("reconcile_hour_utc must be within 0..23")
        if not 0.0 <= self.crash_after_send <= 1.0:
            problems.append("crash_after_send must be within [0, 1]")
        if min(self.meter_event_rate, self.stream_rate, self.summary_rate) <= 0:
            problems.append("rates must be > 0")
        if self.lookback_hours < 1 or self.stream_threshold < 1 or self.summary_workers < 1:
            problems.append("lookback_hours, stream_threshold and summary_workers must be >= 1")
        if not 60 <= self.session_idle_s <= self.session_max_s:
            problems.append("session_idle_s must be >= 60 and <= session_max_s")
        if problems:
            raise ValueError("; ".join(problems))
        return self
