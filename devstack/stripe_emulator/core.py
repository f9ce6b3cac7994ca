"""The emulator's shared runtime: configuration, clock, store, faults, webhooks and events.

Domain modules (`catalog`, `meters`, `subscriptions`, ...) are plain functions of an
`Emulator` and a `Call`; they return the response body or raise `StripeError`.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Any

from .clock import EmulatorClock
from .config import EmulatorConfig
from .faults import FaultInjector, FaultSettings
from .forms import Params
from .idempotency import Idempotency
from .state import Store, new_id
from .webhooks import WebhookDispatcher

JSON = dict[str, Any]

current_request: contextvars.ContextVar[JSON | None] = contextvars.ContextVar(
    "current_request", default=None
)


@dataclass
class Call:
    """One decoded API request as handlers see it."""

    method: str
    path: str
    params: Params
    path_params: dict[str, str] = field(default_factory=dict)
    token: str = ""

    def arg(self, name: str) -> str:
        """A path parameter."""
        return self.path_params[name]


class Emulator:
    """All state of one emulator instance; every mutation happens on the serving loop."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.store = Store.load(config.state_file)
        self.clock = EmulatorClock(self.store.clock_offset)
        self.faults = FaultInjector(FaultSettings(seed=config.seed))
        self.webhooks = WebhookDispatcher(self.store, self.clock, config.webhooks, config.seed)
        self.idempotency = Idempotency(self.store, config.idempotency_ttl_seconds)
        # The emulator's own address as its last request reached it (`app.remember_base`):
        # hosted pages (invoices) are linked on it, whichever request finalized them.
        self.base_url = "http://127.0.0.1"

    def now(self) -> int:
        """Emulator time in whole seconds."""
        return self.clock.now_int()

    def reset(self) -> None:
        """Forget everything: objects, events, endpoints, faults, clock offset, logs."""
        fresh = Store()
        for name in vars(fresh):
            setattr(self.store, name, getattr(fresh, name))
        self.clock.reset()
        self.webhooks.cancel_pending()
        self.faults.configure(FaultSettings(seed=self.config.seed))
        self.webhooks.configure(self.config.webhooks, self.config.seed)

    def persist(self) -> None:
        """Save the state when a state file is configured."""
        if self.config.state_file is not None:
            self.store.clock_offset = self.clock.offset
            self.store.save(self.config.state_file)

    def emit(self, event_type: str, obj: JSON, previous: JSON | None = None) -> JSON:
        """Record an `event` object for `obj` and hand it to the webhook dispatcher."""
        request = current_request.get()
        event: JSON = {
            "id": new_id("evt"),
            "object": "event",
            "type": event_type,
            "created": self.now(),
            "api_version": self.config.api_version,
            "livemode": False,
            "data": {"object": public(obj), "previous_attributes": public(previous or {})},
            "request": {
                "id": request.get("request_id") if request else None,
                "idempotency_key": request.get("idempotency_key") if request else None,
            },
            "pending_webhooks": len(self.webhooks.targets(event_type)),
        }
        if not previous:
            del event["data"]["previous_attributes"]
        self.store.put("event", event)
        self.webhooks.dispatch(event)
        return event


def public(value: Any) -> Any:
    """A deep copy without internal fields (keys starting with `_`)."""
    if isinstance(value, dict):
        return {k: public(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [public(v) for v in value]
    return value
