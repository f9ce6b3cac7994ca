"""The admin API of outbound webhooks: endpoints, secrets, the delivery log, replay.

Every route needs the `admin` scope and acts on the key's tenant only (another tenant's
endpoint is a 404). The work is done by `meterline.notify` (`EndpointStore`, `DeliveryLog`);
this module only maps HTTP onto it. Bad input is a 422 naming the field.

Routes: `GET /v1/webhooks/event-types`; `POST /v1/webhooks/endpoints {"url", "description"?,
"event_types"?, "enabled"?}` (201, with the secret shown once); `GET`, `PATCH`, `DELETE
/v1/webhooks/endpoints/{id}`; `POST .../{id}/rotate-secret {"overlap_s"?}`; `GET
.../{id}/secrets`; `GET .../{id}/deliveries?status=&limit=` (newest first, each with its
attempts: time, status code, latency, error); `POST .../{id}/messages/{msg_id}/replay` (202).
A URL that is not http(s), carries credentials or names an internal address is a 422 on `url`
(unless `METERLINE_WEBHOOK_ALLOW_PRIVATE_URLS`). Design, events and the retry schedule:
meterline/notify/README.md.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from meterline.inputs import FREE_TEXT
from meterline.notify.events import EVENT_TYPES
from meterline.notify.postgres.deliveries import DeliveryLog
from meterline.notify.postgres.endpoints import DEFAULT_OVERLAP_S, EndpointChange, EndpointStore
from meterline.notify.urls import MAX_URL
from reporter.auth import Admin

_TYPES = Field(
    default=None,
    max_length=len(EVENT_TYPES),
    description="Event types to send (empty or absent: all). See GET /v1/webhooks/event-types.",
)


class EndpointBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(max_length=MAX_URL, description="http(s) URL that receives the POSTs")
    description: str | None = Field(default=None, max_length=500, pattern=FREE_TEXT)
    event_types: list[str] | None = _TYPES
    enabled: bool | None = None


class EndpointPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str | None = Field(default=None, max_length=MAX_URL)
    description: str | None = Field(default=None, max_length=500, pattern=FREE_TEXT)
    event_types: list[str] | None = _TYPES
    enabled: bool | None = Field(
        default=None, description="true re-enables an endpoint and clears its failure streak"
    )


class RotateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    overlap_s: int = Field(
        default=DEFAULT_OVERLAP_S, description="how long the previous secrets keep signing"
    )


EndpointId = Annotated[int, Path(ge=1, le=2**63 - 1)]
MessageId = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_]+$")]


def _change(body: EndpointBody | EndpointPatch) -> EndpointChange:
    return EndpointChange(body.url, body.description, body.event_types, body.enabled)


def _stores(request: Request) -> tuple[EndpointStore, DeliveryLog]:
    reporter = request.app.state.reporter
    return reporter.endpoints, reporter.delivery_log


def mount(app: FastAPI) -> None:
    """Add the /v1/webhooks routes."""
    _endpoint_routes(app)
    _delivery_routes(app)


def _endpoint_routes(app: FastAPI) -> None:
    @app.get("/v1/webhooks/event-types")
    def webhook_event_types(who: Admin) -> dict[str, Any]:
        """The event types an endpoint can subscribe to."""
        return {"data": [{"type": k, "description": v} for k, v in EVENT_TYPES.items()]}

    @app.post("/v1/webhooks/endpoints", status_code=201)
    def create_webhook_endpoint(who: Admin, body: EndpointBody, request: Request) -> Any:
        """Create an endpoint; the answer holds its signing secret, shown this once."""
        endpoint, secret = _stores(request)[0].create(who.tenant_id, _change(body))
        return {**endpoint.as_dict(), "secret": secret}

    @app.get("/v1/webhooks/endpoints")
    def list_webhook_endpoints(who: Admin, request: Request) -> dict[str, Any]:
        return {"data": [e.as_dict() for e in _stores(request)[0].all(who.tenant_id)]}

    @app.get("/v1/webhooks/endpoints/{endpoint_id}")
    def get_webhook_endpoint(
        who: Admin, endpoint_id: EndpointId, request: Request
    ) -> dict[str, Any]:
        return _stores(request)[0].get(who.tenant_id, endpoint_id).as_dict()

    @app.patch("/v1/webhooks/endpoints/{endpoint_id}")
    def update_webhook_endpoint(
        who: Admin, endpoint_id: EndpointId, body: EndpointPatch, request: Request
    ) -> dict[str, Any]:
        """Change the fields given."""
        store = _stores(request)[0]
        return store.update(who.tenant_id, endpoint_id, _change(body)).as_dict()

    @app.delete("/v1/webhooks/endpoints/{endpoint_id}", status_code=204)
    def delete_webhook_endpoint(who: Admin, endpoint_id: EndpointId, request: Request) -> Response:
        """Delete the endpoint with its secrets and delivery log."""
        _stores(request)[0].delete(who.tenant_id, endpoint_id)
        return Response(status_code=204)

    @app.post("/v1/webhooks/endpoints/{endpoint_id}/rotate-secret")
    def rotate_webhook_secret(
        who: Admin, endpoint_id: EndpointId, request: Request, body: RotateBody | None = None
    ) -> dict[str, Any]:
        """A new secret; during the overlap every live secret signs (space-separated
        signatures in `webhook-signature`)."""
        overlap = body.overlap_s if body else DEFAULT_OVERLAP_S
        secret = _stores(request)[0].rotate(who.tenant_id, endpoint_id, overlap)
        return {"secret": secret, "overlap_s": overlap}

    @app.get("/v1/webhooks/endpoints/{endpoint_id}/secrets")
    def list_webhook_secrets(
        who: Admin, endpoint_id: EndpointId, request: Request
    ) -> dict[str, Any]:
        """The secrets that sign now, newest first."""
        return {"data": _stores(request)[0].secrets(who.tenant_id, endpoint_id)}


def _delivery_routes(app: FastAPI) -> None:
    @app.get("/v1/webhooks/endpoints/{endpoint_id}/deliveries")
    def list_webhook_deliveries(
        who: Admin,
        endpoint_id: EndpointId,
        request: Request,
        status: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        """Newest first, each with its attempts (time, status code, latency, error)."""
        log = _stores(request)[1]
        return {"data": log.deliveries(who.tenant_id, endpoint_id, status, limit)}

    @app.post("/v1/webhooks/endpoints/{endpoint_id}/messages/{msg_id}/replay", status_code=202)
    def replay_webhook_message(
        who: Admin, endpoint_id: EndpointId, msg_id: MessageId,
        request: Request,
    ) -> dict[str, Any]:  # fmt: skip
        """Send a message to the endpoint again, with a fresh retry schedule."""
        return _stores(request)[1].replay(who.tenant_id, endpoint_id, msg_id)
