"""Seeded, deterministic fault injection.

Each concern draws from its own `random.Random` seeded from the configured seed, so the n-th
eligible request always meets the same fate for a given seed and settings, whatever the
meter-event drops or webhook jitter did before it. Reconfiguring re-seeds everything.

The faults: 429 `rate_limit` (never saved under the Idempotency-Key); 500 before processing
(not saved, so a retry can succeed); 500 after processing (the work is done, and the 500 is
saved and replayed under the key); added latency; dropped meter events (answered 200 but never
summarized; the identifier is not kept, so a resend repairs the loss). `paths` limits which
path prefixes are affected.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

FaultKind = Literal["rate_limited", "server_error", "server_error_after"]


@dataclass(frozen=True)
class FaultSettings:
    """What to inject and where.

    Rates are probabilities per eligible request: `rate_429` answers 429 before anything runs,
    `rate_500` answers 500 before anything runs (a retry can succeed), `rate_500_after` runs
    the request, saves the 500 under its Idempotency-Key and answers 500 (the work is done but
    the client cannot know). `latency_ms` is added to every eligible request.
    `drop_meter_events` is the probability that an accepted meter event is silently lost
    (answered 200, never summarized). `paths` are path prefixes that are eligible; empty means
    every `/v1` and `/v2` path.
    """

    seed: int = 0
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_500_after: float = 0.0
    latency_ms: float = 0.0
    drop_meter_events: float = 0.0
    paths: tuple[str, ...] = ()

    def validate(self) -> list[str]:
        """Every problem at once (empty when valid)."""
        problems = [
            f"{name} must be within [0, 1]"
            for name in ("rate_429", "rate_500", "rate_500_after", "drop_meter_events")
            if not 0.0 <= getattr(self, name) <= 1.0
        ]
        if self.rate_429 + self.rate_500 + self.rate_500_after > 1.0:
            problems.append("rate_429 + rate_500 + rate_500_after must be <= 1")
        if self.latency_ms < 0:
            problems.append("latency_ms must be >= 0")
        return problems

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        data = asdict(self)
        data["paths"] = list(self.paths)
        return data


@dataclass
class FaultInjector:
    """Draws fault decisions from seeded generators and remembers what it injected."""

    settings: FaultSettings = field(default_factory=FaultSettings)
    injected: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.configure(self.settings)

    def configure(self, settings: FaultSettings) -> None:
        """Replace the settings and re-seed every generator."""
        self.settings = settings
        self._requests = random.Random(f"{settings.seed}:requests")
        self._drops = random.Random(f"{settings.seed}:drops")
        self.injected = []

    def eligible(self, path: str) -> bool:
        """True when faults apply to `path`."""
        if self.settings.paths:
            return any(path.startswith(prefix) for prefix in self.settings.paths)
        return path.startswith(("/v1/", "/v2/"))

    def decide(self, method: str, path: str) -> FaultKind | None:
        """The fault for this request, if any; draws exactly once per eligible request."""
        s = self.settings
        if not self.eligible(path) or s.rate_429 + s.rate_500 + s.rate_500_after == 0:
            return None
        draw = self._requests.random()
        kind: FaultKind | None = None
        if draw < s.rate_429:
            kind = "rate_limited"
        elif draw < s.rate_429 + s.rate_500:
            kind = "server_error"
        elif draw < s.rate_429 + s.rate_500 + s.rate_500_after:
            kind = "server_error_after"
        if kind is not None:
            self.injected.append({"kind": kind, "method": method, "path": path})
        return kind

    def latency_seconds(self, path: str) -> float:
        """Added latency for an eligible path."""
        return self.settings.latency_ms / 1000.0 if self.eligible(path) else 0.0

    def drop_meter_event(self, identifier: str) -> bool:
        """True when this accepted meter event must be lost."""
        if self.settings.drop_meter_events <= 0:
            return False
        dropped = self._drops.random() < self.settings.drop_meter_events
        if dropped:
            self.injected.append({"kind": "dropped_meter_event", "identifier": identifier})
        return dropped


def settings_from_json(data: dict[str, Any]) -> FaultSettings:
    """Build settings from a control-API body; raises ValueError listing every problem."""
    known = set(FaultSettings.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    try:
        values = {k: v for k, v in data.items() if k in known}
        if "paths" in values:
            values["paths"] = tuple(values["paths"])
        settings = FaultSettings(**values)
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    problems = [f"unknown field {name}" for name in unknown] + settings.validate()
    if problems:
        raise ValueError("; ".join(problems))
    return settings
