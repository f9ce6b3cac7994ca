"""Stripe-shaped API errors; the HTTP layer turns them into the error envelope in one place."""

from __future__ import annotations

from typing import Any

DOC_URL = "https://stripe.com/docs/error-codes/"


class StripeError(Exception):
    """An error answered as `{"error": {...}}` with `status`.

    `headers` are added to the response (e.g. `Stripe-Should-Retry: false`). `saved` says
    whether an idempotent request stores this answer for replay: Stripe saves only answers of
    requests that started executing, so validation errors are not saved.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        saved: bool = False,
        decline_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.headers = headers or {}
        self.saved = saved
        self.decline_code = decline_code

    def body(self) -> dict[str, Any]:
        """The JSON error envelope."""
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = DOC_URL + self.code
        if self.param:
            error["param"] = self.param
        if self.decline_code:
            error["decline_code"] = self.decline_code
        return {"error": error}


def invalid(message: str, param: str | None = None, code: str | None = None) -> StripeError:
    """A 400 `invalid_request_error`."""
    return StripeError(400, message, param=param, code=code or "parameter_invalid")


def missing_param(param: str) -> StripeError:
    """A 400 for a required parameter that was not sent."""
    return StripeError(
        400, f"Missing required param: {param}.", param=param, code="parameter_missing"
    )


def not_found(kind: str, object_id: str, param: str = "id") -> StripeError:
    """A 404 `resource_missing` for an unknown object."""
    return StripeError(
        404,
        f"No such {kind}: '{object_id}'",
        param=param,
        code="resource_missing",
    )


def unauthorized(message: str) -> StripeError:
    """A 401 `authentication_error`."""
    return StripeError(401, message, type_="authentication_error")
