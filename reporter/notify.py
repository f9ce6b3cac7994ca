"""Telling people about new alerts: a Slack-compatible webhook, or nothing.

`WebhookNotifier` posts `{"text": ...}` (Slack incoming-webhook JSON, also understood by
Mattermost, Rocket.Chat and Teams' Slack-compatible endpoints). A failed notification is
logged and never fails the run: the alerts are in Postgres and on /finance regardless.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from reporter.alerts import Alert

log = logging.getLogger("reporter.notify")


class Notifier(abc.ABC):
    @abc.abstractmethod
    def alerts_opened(self, tenant_id: int, run_id: int, alerts: Sequence[Alert]) -> None:
        """Announce newly opened alerts; never raises."""


class NullNotifier(Notifier):
    def alerts_opened(self, tenant_id: int, run_id: int, alerts: Sequence[Alert]) -> None:
        return None


@dataclass
class MemoryNotifier(Notifier):
    sent: list[dict[str, object]] = field(default_factory=list)

    def alerts_opened(self, tenant_id: int, run_id: int, alerts: Sequence[Alert]) -> None:
        self.sent.append(message(run_id, alerts, ""))


class WebhookNotifier(Notifier):
    def __init__(self, url: str, public_url: str = "", timeout: float = 5.0) -> None:
        self._url = url
        self._public = public_url.rstrip("/")
        self._timeout = timeout

    def alerts_opened(self, tenant_id: int, run_id: int, alerts: Sequence[Alert]) -> None:
        if not alerts:
            return
        try:
            response = httpx.post(
                self._url, json=message(run_id, alerts, self._public), timeout=self._timeout
            )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("alert notification failed: %s", exc)


def message(run_id: int, alerts: Sequence[Alert], public_url: str) -> dict[str, object]:
    """The Slack-compatible body: one summary line, then one line per alert (at most 10)."""
    money: dict[str, float] = {}
    for a in alerts:
        if a.money_minor is not None:
            cur = (a.currency or "").upper()
            money[cur] = money.get(cur, 0.0) + float(a.money_minor) / 100
    at_risk = ", ".join(f"{v:,.2f} {c}" for c, v in sorted(money.items())) or "n/a"
    lines = [f":rotating_light: Meterline reconciliation run {run_id}: "
             f"{len(alerts)} new alert(s), {at_risk} at risk"]  # fmt: skip
    for a in alerts[:10]:
        lines.append(
            f"• {a.kind} — {a.customer} / {a.meter} at {a.window_start:%Y-%m-%d %H:%M} UTC: "
            f"difference {a.difference.normalize():f}"
        )
    if len(alerts) > 10:
        lines.append(f"… and {len(alerts) - 10} more")
    if public_url:
        lines.append(f"Review: {public_url}/finance")
    return {"text": "\n".join(lines)}
