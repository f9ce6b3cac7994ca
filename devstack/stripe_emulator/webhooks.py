"""Signed webhook deliveries with retries, backoff, jitter (out of order) and duplicates.

Deliveries run as tasks on the server's event loop. Each attempt is signed afresh with the
emulator clock (`Stripe-Signature: t=<emulator now>,v1=<hex>` per secret) and recorded in
`store.deliveries`. A non-2xx answer or a connection error is retried after
`retry_base_seconds * 2**(attempt-1)` real seconds, capped, up to `max_attempts` tries.

Signatures are made with `stripe.WebhookSignature.generate_signature_header`, one `v1=` per
secret for rotation. Options (`WebhookConfig`, also through `POST /_emulator/webhooks/options`):
`out_of_order_jitter_seconds` (a seeded random delay, so deliveries can overtake each other)
and `duplicate_rate` (a seeded chance of delivering an event twice). Endpoints are registered
through the control API; `/v1/webhook_endpoints` is not emulated.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from typing import Any

import httpx
import orjson
import stripe

from .clock import EmulatorClock
from .config import WebhookConfig
from .state import Store, new_id

JSON = dict[str, Any]


def sign(payload: str, secrets: list[str], timestamp: int) -> str:
    """The `Stripe-Signature` header: one `v1` per secret (as during secret rotation)."""
    parts = [f"t={timestamp}"]
    for secret in secrets:
        header = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp)
        parts.extend(part for part in header.split(",") if part.startswith("v1="))
    return ",".join(parts)


class WebhookDispatcher:
    """Registers endpoints and delivers events to them.

    `dispatch` must be called on the event loop that `start` ran on; without a started loop
    events are recorded but not delivered (useful for pure unit tests).
    """

    def __init__(self, store: Store, clock: EmulatorClock, config: WebhookConfig, seed: int):
        self._store = store
        self._clock = clock
        self.config = config
        self._rng = random.Random(f"{seed}:webhooks")
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    def start(self) -> None:
        """Open the HTTP client; call on the serving loop."""
        self._client = httpx.AsyncClient(timeout=self.config.timeout_seconds)

    async def close(self) -> None:
        """Cancel pending deliveries and close the client."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def cancel_pending(self) -> None:
        """Abandon every scheduled delivery (used by reset)."""
        for task in list(self._tasks):
            task.cancel()

    def configure(self, config: WebhookConfig, seed: int) -> None:
        """Replace delivery options (jitter, duplicates, retries) and re-seed."""
        self.config = config
        self._rng = random.Random(f"{seed}:webhooks")

    def update(self, **changes: Any) -> None:
        """Change some delivery options, keeping the generator."""
        self.config = replace(self.config, **changes)

    def register(self, url: str, secret: str | None, events: list[str]) -> JSON:
        """Add an endpoint; `events` may hold `*`. Returns it with its secret."""
        endpoint: JSON = {
            "id": new_id("we"),
            "object": "webhook_endpoint",
            "url": url,
            "secret": secret or new_id("whsec", 32),
            "extra_secrets": [],
            "enabled_events": events or ["*"],
            "status": "enabled",
            "created": self._clock.now_int(),
        }
        self._store.webhook_endpoints[endpoint["id"]] = endpoint
        return endpoint

    def targets(self, event_type: str) -> list[JSON]:
        """Enabled endpoints subscribed to `event_type`."""
        return [
            ep
            for ep in self._store.webhook_endpoints.values()
            if ep["status"] == "enabled"
            and ("*" in ep["enabled_events"] or event_type in ep["enabled_events"])
        ]

    def pending(self) -> int:
        """Deliveries not finished yet (including waits between retries)."""
        return len(self._tasks)

    def dispatch(self, event: JSON) -> None:
        """Schedule delivery of `event` to every subscribed endpoint."""
        if self._client is None:
            return
        loop = asyncio.get_running_loop()
        for endpoint in self.targets(event["type"]):
            copies = 2 if self._rng.random() < self.config.duplicate_rate else 1
            for _ in range(copies):
                delay = self._rng.uniform(0.0, self.config.out_of_order_jitter_seconds)
                task = loop.create_task(self._deliver(endpoint, event, delay))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _deliver(self, endpoint: JSON, event: JSON, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        payload = orjson.dumps(event).decode()
        for attempt in range(1, self.config.max_attempts + 1):
            if await self._attempt(endpoint, event, payload, attempt):
                return
            if attempt < self.config.max_attempts:
                await asyncio.sleep(self._backoff(attempt))

    def _backoff(self, attempt: int) -> float:
        base = self.config.retry_base_seconds * 2 ** (attempt - 1)
        return float(min(base, self.config.retry_max_seconds))

    async def _attempt(self, endpoint: JSON, event: JSON, payload: str, attempt: int) -> bool:
        assert self._client is not None
        secrets = [endpoint["secret"], *endpoint.get("extra_secrets", [])]
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": sign(payload, secrets, self._clock.now_int()),
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        }
        status: int | None = None
        error: str | None = None
        try:
            response = await self._client.post(endpoint["url"], content=payload, headers=headers)
            status = response.status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        self._record(endpoint, event, attempt, status, error)
        return status is not None and 200 <= status < 300

    def _record(
        self, endpoint: JSON, event: JSON, attempt: int, status: int | None, error: str | None
    ) -> None:
        self._store.deliveries.append(
            {
                "event_id": event["id"],
                "event_type": event["type"],
                "endpoint_id": endpoint["id"],
                "attempt": attempt,
                "status": status,
                "error": error,
                "succeeded": status is not None and 200 <= status < 300,
                "at": self._clock.now(),
            }
        )
