"""`DunningSettings`: the dunning section (`METERLINE_DUNNING_*`), read once at start-up.

Both sides read it: the entitlements service (webhooks start and move sequences) and the
reporter (its scheduler runs the timed steps). `retries` must match Stripe's retry policy
(the number of automatic retries after the first attempt; Stripe's default is 4): the warning
goes before the retry that follows the `retries`-th failed attempt.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from meterline.dunning.model import DunningPolicy


class DunningSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="METERLINE_DUNNING_", extra="ignore", frozen=True)

    reminder_after_days: float = Field(default=3.0, gt=0)
    final_warning_before_days: float = Field(default=2.0, ge=0)
    recovery_after_days: float = Field(default=7.0, gt=0)
    retries: int = Field(default=4, ge=0, le=8)

    def policy(self) -> DunningPolicy:
        return DunningPolicy(
            reminder_after=timedelta(days=self.reminder_after_days),
            final_warning_before=timedelta(days=self.final_warning_before_days),
            recovery_after=timedelta(days=self.recovery_after_days),
            retries=self.retries,
        )
