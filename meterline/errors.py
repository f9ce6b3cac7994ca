"""Domain errors. Each carries its HTTP status, so every HTTP layer maps them in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class MeterlineError(Exception):
    """Base of every domain error. `status` is the HTTP status an API answers with."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message}


class ConfigError(MeterlineError):
    """Settings are missing or invalid; raised at start-up, before anything runs."""

    code = "config_error"


class Unauthorized(MeterlineError):
    status = 401
    code = "unauthorized"


class Forbidden(MeterlineError):
    status = 403
    code = "forbidden"


class NotFound(MeterlineError):
    status = 404
    code = "not_found"


class Conflict(MeterlineError):
    status = 409
    code = "conflict"


class PayloadTooLarge(MeterlineError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(MeterlineError):
    status = 415
    code = "unsupported_media_type"


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one input field; `index` is the event's position in a batch."""

    field: str
    message: str
    index: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "message": self.message}
        if self.index is not None:
            out = {"index": self.index, **out}
        return out


class ValidationFailed(MeterlineError):
    """Input broke one or more rules; every problem is listed, not just the first."""

    status = 422
    code = "validation_failed"

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(f"{len(errors)} invalid field(s)")
        self.errors = errors

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "errors": [e.as_dict() for e in self.errors]}


class RetryLater(MeterlineError):
    """A transient condition (overload, broker not acknowledging); the client should retry."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooManyRequests(RetryLater):
    status = 429
    code = "rate_limited"


class Unavailable(RetryLater):
    status = 503
    code = "unavailable"
