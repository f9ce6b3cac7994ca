"""The committed OpenAPI documents (openapi/*.json) are the code's, and every document has
readable unique operation ids, the bearer scheme on its authenticated operations, and the
project's one version."""

from __future__ import annotations

import difflib
import importlib.metadata
import re
import tomllib
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

import openapi
from meterline.http.openapi import declare_bearer, operation_id
from tests.entitlements.conftest import Api, api_env  # noqa: F401 (api_env, api: fixtures)
from tests.entitlements.conftest import api as api

ROOT = Path(__file__).resolve().parents[1]
SERVICES = list(openapi.SERVICES)
PUBLIC = {("entitlements", "/v1/stripe/webhook")}


@pytest.fixture(scope="module")
def documents() -> dict[str, dict[str, Any]]:
    return {service: openapi.document(service) for service in SERVICES}


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(p, m, op) for p, item in doc["paths"].items() for m, op in item.items()]


@pytest.mark.parametrize("service", SERVICES)
def test_the_committed_document_is_the_codes(
    service: str, documents: dict[str, dict[str, Any]]
) -> None:
    now, before = openapi.render(documents[service]), openapi.committed(service)
    diff = list(difflib.unified_diff(before.splitlines(), now.splitlines(), "committed", "code"))
    assert now == before, (
        f"openapi/{service}.json differs from the code: run `{openapi.REGENERATE}` and commit "
        "the result.\n" + "\n".join(diff[:60])
    )


def test_operation_ids_are_the_route_names_unique_and_readable(
    documents: dict[str, dict[str, Any]],
) -> None:
    for service, doc in documents.items():
        ids = [op["operationId"] for _, _, op in operations(doc)]
        assert len(ids) == len(set(ids)), service
        for op_id in ids:
            assert re.fullmatch(r"[a-z][a-z0-9_]{2,30}", op_id), (service, op_id)
            assert not re.search(r"_(get|post|put|delete|patch)$|v1_", op_id), (service, op_id)
    entitlements = {op["operationId"] for _, _, op in operations(documents["entitlements"])}
    assert {"one_entitlement", "consume", "stripe_webhook"} <= entitlements


def test_every_authenticated_operation_declares_the_bearer_scheme(
    documents: dict[str, dict[str, Any]],
) -> None:
    for service, doc in documents.items():
        scheme = doc["components"]["securitySchemes"]["bearer"]
        assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
        for path, method, op in operations(doc):
            secured = path.startswith("/v1/") and (service, path) not in PUBLIC
            expected = [{"bearer": []}] if secured else None
            assert op.get("security") == expected, (service, method, path)
    assert not any(p.startswith("/finance") for p in documents["reporter"]["paths"])


def test_one_version_everywhere(documents: dict[str, dict[str, Any]]) -> None:
    version = importlib.metadata.version("meterline")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    sdk = tomllib.loads((ROOT / "sdk" / "pyproject.toml").read_text())["project"]["version"]
    assert {doc["info"]["version"] for doc in documents.values()} == {version}
    assert (version, sdk) == (project, project)


@pytest.mark.filterwarnings("ignore:Duplicate Operation ID")
def test_two_routes_sharing_an_operation_id_are_refused() -> None:
    app = FastAPI(generate_unique_id_function=operation_id)

    @app.get("/v1/a", name="same")
    def first() -> None: ...

    @app.get("/v1/b", name="same")
    def second() -> None: ...

    declare_bearer(app)
    with pytest.raises(ValueError, match="operation id 'same' of GET /v1/b"):
        app.openapi()


@pytest.mark.integration
def test_the_entitlements_api_refuses_the_operations_declared_bearer_without_a_key(
    api: Api,
) -> None:
    """The declaration is true: without a key, a declared operation answers 401 (or 422: some
    routes validate their input before their key), and the one authenticated otherwise (the
    signed webhook) never answers 401."""
    doc = orjson.loads(openapi.committed("entitlements"))
    with httpx.Client(base_url=api.url, timeout=10) as http:
        for path, method, op in operations(doc):
            url = re.sub(r"\{[^}]+\}", "x", path)
            status = http.request(method.upper(), url, json={}).status_code
            allowed = {401, 422} if "security" in op else set(range(200, 600)) - {401}
            assert status in allowed, (method, path, status)
