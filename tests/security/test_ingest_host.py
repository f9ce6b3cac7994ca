"""Ingest never reflects the Host header: a path with a trailing slash is not redirected."""

from __future__ import annotations

from fastapi.testclient import TestClient

from ingest.app import Dependencies, create_server
from ingest.caches import KeyCache, MeterCache
from ingest.sinks import MemorySink
from meterline.catalog.repository import MemoryCatalogRepository
from meterline.tenants import MemoryTenantRepository


def test_no_redirect_echoes_the_host_header() -> None:
    tenants = MemoryTenantRepository()
    deps = Dependencies(
        keys=KeyCache(tenants, "ingest"),
        meters=MeterCache(MemoryCatalogRepository()),
        sink=MemorySink(),
    )
    with TestClient(create_server(deps), follow_redirects=False) as http:
        for path in ("/v1/events/", "/healthz/", "/openapi.json/"):
            answer = http.get(path, headers={"host": "evil.example"})
            assert answer.status_code == 404, (path, answer.status_code)
            assert "evil.example" not in answer.headers.get("location", "")
