"""The usage event: its limits, the normalized event, and a batch as columns before and after
the rules (`meterline.events.rules`)."""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

SCHEMA_VERSION = 1
MAX_ID_LEN = 128
"""The longest id, customer or meter, in characters."""
MAX_PROPERTIES = 32
DEFAULT_LATENESS_MS = 35 * 86_400_000
MAX_FUTURE_MS = 5 * 60_000
RESERVATION_PROPERTY = "meterline_reservation"
"""The property that marks an event an entitlement consume published under a reservation: only
the entitlements service sets it (the rules refuse it in events sent by clients), and the
aggregator removes the reservation when it counts the event."""
EVENT_FIELDS = ("id", "customer", "meter", "value", "timestamp", "properties")
"""The fields a client sends, in the order their problems are reported."""
TYPED = {
    "id": f"a string of 1 to {MAX_ID_LEN} characters",
    "customer": f"a string of 1 to {MAX_ID_LEN} characters",
    "meter": "a string",
    "value": "a float from 0 to 1e15",
    "timestamp": "an int, a string, or None",
    "properties": f"a dict of at most {MAX_PROPERTIES} keys, or None",
}
"""What a decoder vouches for in each column of `SentEvents(typed=True)` (ingest's msgspec
structs check it while decoding); the rules then check the rest."""


@dataclass(frozen=True, slots=True, init=False)
class UsageEvent:
    """One normalized usage event. Times are epoch milliseconds, UTC. `value` is the double
    that carries a value under the rule of `meterline.values` exactly (its shortest text is the
    decimal sent); arithmetic on values goes through that module, never on the doubles."""

    tenant_id: int
    id: str
    customer: str
    meter: str
    value: float
    timestamp_ms: int
    received_ms: int
    properties: dict[str, Any] | None = None

    def __init__(
        self,
        tenant_id: int,
        id: str,
        customer: str,
        meter: str,
        value: float,
        timestamp_ms: int,
        received_ms: int,
        properties: dict[str, Any] | None = None,
    ) -> None:
        # The generated frozen __init__ pays object.__setattr__ per field; the slots' own
        # setters do the same work directly.
        _SET_TENANT(self, tenant_id)
        _SET_ID(self, id)
        _SET_CUSTOMER(self, customer)
        _SET_METER(self, meter)
        _SET_VALUE(self, value)
        _SET_TIMESTAMP(self, timestamp_ms)
        _SET_RECEIVED(self, received_ms)
        _SET_PROPERTIES(self, properties)

    @property
    def key(self) -> bytes:
        """The Kafka key: one customer's events stay in order on one partition."""
        return f"{self.tenant_id}/{self.customer}".encode()


(
    _SET_TENANT,
    _SET_ID,
    _SET_CUSTOMER,
    _SET_METER,
    _SET_VALUE,
    _SET_TIMESTAMP,
    _SET_RECEIVED,
    _SET_PROPERTIES,
) = (vars(UsageEvent)[name].__set__ for name in UsageEvent.__slots__)


class Rules(NamedTuple):
    """What a tenant's events are checked against, fixed for one request. (A named tuple:
    built once per request, it costs half what a frozen dataclass does.)"""

    now_ms: int
    meters: Container[str]
    lateness_ms: int = DEFAULT_LATENESS_MS
    future_ms: int = MAX_FUTURE_MS


class PoisonMessage(ValueError):
    """A Kafka message that can never be processed; `reason` says why (for the DLQ)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class SentEvents:
    """A batch's events as a client sent them, one list per field, entry i of each belonging
    to event i; None where a field was absent, except `value`, which is 1 there. `index` is
    each event's position in the request (None for an event sent alone, outside a batch).

    `typed`: a decoder already checked each field's JSON type and bounds (`TYPED`), so the
    rules need not look at them again."""

    id: list[Any]
    customer: list[Any]
    meter: list[Any]
    value: list[Any]
    timestamp: list[Any]
    properties: list[Any]
    index: Sequence[int | None]
    typed: bool = False

    @classmethod
    def of(cls, raws: Sequence[dict[str, Any]], index: Sequence[int | None]) -> SentEvents:
        """Columns of JSON objects (one a dict)."""
        n = len(raws)
        return cls(
            list(map(dict.get, raws, [EVENT_FIELDS[0]] * n)),
            list(map(dict.get, raws, [EVENT_FIELDS[1]] * n)),
            list(map(dict.get, raws, [EVENT_FIELDS[2]] * n)),
            [raw.get("value", 1) for raw in raws],
            list(map(dict.get, raws, [EVENT_FIELDS[4]] * n)),
            list(map(dict.get, raws, [EVENT_FIELDS[5]] * n)),
            index,
        )


@dataclass(slots=True)
class ValidEvents:
    """A batch's events as the rules normalized them (`rules.check_events`), one list per
    field: times in epoch milliseconds (now where absent), values as the doubles that carry
    them, empty properties as None; no text holds a control character."""

    id: list[str]
    customer: list[str]
    meter: list[str]
    value: list[float]
    timestamp_ms: list[int]
    properties: list[dict[str, Any] | None]

    def __len__(self) -> int:
        return len(self.id)

    def event(self, i: int, tenant_id: int, received_ms: int) -> UsageEvent:
        return UsageEvent(
            tenant_id,
            self.id[i],
            self.customer[i],
            self.meter[i],
            self.value[i],
            self.timestamp_ms[i],
            received_ms,
            self.properties[i],
        )
