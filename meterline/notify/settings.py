"""`WebhookSettings`: the outbound webhooks' section (`METERLINE_WEBHOOK_*`), read once at start."""

from __future__ import annotations

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from meterline.notify.schedule import RETRY_DELAYS_S


class WebhookSettings(BaseSettings):
    """How the dispatcher delivers.

    `dispatcher_enabled`: the reporter runs the dispatcher (`workers` threads, each sending one
    delivery at a time; idle workers look again every `poll_s`). `timeout_s`: one request's
    limit (the spec recommends 15 to 30 s). `retry_delays_s`, `retry_jitter`: the schedule
    (`meterline.notify.schedule`; tests shorten it: `METERLINE_WEBHOOK_RETRY_DELAYS_S=0.1,0.1`).
    An endpoint is disabled after
    `disable_after_failures` failed attempts in a row spanning at least `disable_after_s`
    (both must hold; a `410 Gone` disables at once). `allow_private_urls`: accept endpoint URLs
    on loopback, private, link-local and other non-public addresses (the dev stack and the tests
    set it; production should not).
    """

    model_config = SettingsConfigDict(env_prefix="METERLINE_WEBHOOK_", extra="ignore", frozen=True)

    dispatcher_enabled: bool = True
    workers: int = 4
    poll_s: float = 0.5
    timeout_s: float = 15.0
    retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S
    retry_jitter: float = 0.2
    disable_after_failures: int = 50
    disable_after_s: float = 5 * 24 * 3600
    allow_private_urls: bool = False

    @field_validator("workers", "disable_after_failures")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError("must be at least 1")
        return v

    @field_validator("retry_delays_s", mode="before")
    @classmethod
    def _seconds_list(cls, v: object) -> object:
        """The environment gives `5,300,1800` (or `[5, 300, 1800]`)."""
        if isinstance(v, str):
            return tuple(x for x in v.strip().strip("[]").replace(" ", "").split(",") if x)
        return v

    @field_validator("retry_delays_s")
    @classmethod
    def _delays(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(d < 0 for d in v):
            raise ValueError("must be a non-empty list of seconds >= 0")
        return v
