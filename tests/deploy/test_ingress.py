"""The Ingress example (components/ingress, in the production overlay): every route of each
HTTP service's code reaches that service and nothing else does, health and metrics stay
inside, TLS covers every host, and the proxy's limits agree with the ones the services
enforce (meterline/http/guard.py and the services' settings)."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import pytest
from starlette.routing import Mount

import openapi
from entitlements_api.settings import EntitlementsSettings
from ingest.settings import IngestSettings
from meterline.http.guard import HttpSettings

from .test_k8s import find
from .tools import K8S, load_yaml

OVERLAYS = ["overlays/production", "overlays/production-keda"]
PRODUCTION = OVERLAYS[0]
COMPONENT = K8S / "components" / "ingress"
NGINX = "nginx.ingress.kubernetes.io/"
# openapi.SERVICES name -> Kubernetes Service name.
SERVICES = {"ingest": "ingest", "entitlements": "entitlements-api", "reporter": "reporter"}
INTERNAL = ("/healthz", "/readyz", "/metrics")
# Each service serves its own schema and docs at the same paths; one host cannot route them
# all, and the committed documents (openapi/) are the published form.
DOCS = ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")
# Headers nginx adds to what it forwards (X-Forwarded-*, X-Request-ID, X-Real-IP, ...).
ADDED_HEADERS = 2048
NGINX_CLIENT_HEADER_BUFFER = 1024


def default(cls: Any, field: str) -> Any:
    """A setting's default as the code declares it (the environment of the test aside)."""
    return cls.model_fields[field].default


@cache
def routes(service: str) -> tuple[str, ...]:
    """Every path the service's app serves, with a sample value for each parameter."""
    app = openapi.SERVICES[service]()
    paths = [*_paths(app.routes), *app.openapi()["paths"]]
    return tuple(sorted({re.sub(r"\{[^}]+\}", "sample", p) for p in paths}))


def _paths(found: list[Any], prefix: str = "") -> list[str]:
    """Route paths, through included routers (their `original_router`) and mounts."""
    paths: list[str] = []
    for route in found:
        router = getattr(route, "original_router", None)
        if router is not None:
            paths += _paths(router.routes, prefix + getattr(route, "prefix", ""))
        elif isinstance(route, Mount):
            paths.append(f"{prefix}{route.path}/sample")
        elif hasattr(route, "path"):
            paths.append(prefix + route.path)
    return paths


def backend(kustomization: str, path: str) -> str | None:
    """The Service an ingress-nginx would send `path` to: an Exact match, else the longest
    Prefix match by path element; None when no rule matches."""
    exact, prefixes = None, []
    for ingress in find(kustomization, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                name = p["backend"]["service"]["name"]
                if p["pathType"] == "Exact" and p["path"] == path:
                    exact = name
                elif p["pathType"] == "Prefix" and (
                    path == p["path"] or path.startswith(p["path"].rstrip("/") + "/")
                ):
                    prefixes.append((len(p["path"]), name))
    return exact or (max(prefixes)[1] if prefixes else None)


def annotations(kustomization: str, name: str) -> dict[str, str]:
    (ingress,) = [i for i in find(kustomization, "Ingress") if i["metadata"]["name"] == name]
    found: dict[str, str] = ingress["metadata"]["annotations"]
    return found


def size(value: str) -> int:
    """nginx's size syntax: 1m, 512k, 100."""
    number, unit = re.fullmatch(r"(\d+)([kKmM]?)", value).groups()  # type: ignore[union-attr]
    return int(number) * {"": 1, "k": 1024, "m": 1024 * 1024}[unit.lower()]


@pytest.mark.parametrize("kustomization", OVERLAYS)
@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_route_reaches_its_service(kustomization: str, service: str) -> None:
    public = [p for p in routes(service) if p not in INTERNAL + DOCS]
    assert public
    for path in public:
        assert backend(kustomization, path) == SERVICES[service], path


@pytest.mark.parametrize("path", INTERNAL + DOCS)
def test_health_metrics_and_docs_are_not_exposed(path: str) -> None:
    assert backend(PRODUCTION, path) is None


def test_backends_exist_and_tls_covers_every_host() -> None:
    services = {s["metadata"]["name"]: s for s in find(PRODUCTION, "Service")}
    ingresses = find(PRODUCTION, "Ingress")
    assert {i["metadata"]["name"] for i in ingresses} == set(SERVICES.values())
    for ingress in ingresses:
        tls = {h for t in ingress["spec"]["tls"] for h in t["hosts"]}
        assert all(t["secretName"] for t in ingress["spec"]["tls"])
        assert annotations(PRODUCTION, ingress["metadata"]["name"])[NGINX + "force-ssl-redirect"]
        for rule in ingress["spec"]["rules"]:
            assert rule["host"] in tls
            for p in rule["http"]["paths"]:
                target = p["backend"]["service"]
                ports = {q["name"] for q in services[target["name"]]["spec"]["ports"]}
                assert target["port"]["name"] in ports


def body_limit(service: str) -> int:
    if service == "ingest":
        limit: int = default(IngestSettings, "max_body_bytes")
        return limit
    return int(default(HttpSettings, "max_body_bytes"))


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_body_limit_is_the_services(service: str) -> None:
    """The proxy refuses (413) what the service would refuse, and buffers the rest in memory."""
    given = annotations(PRODUCTION, SERVICES[service])
    assert size(given[NGINX + "proxy-body-size"]) == body_limit(service)
    assert size(given[NGINX + "client-body-buffer-size"]) == body_limit(service)
    assert given[NGINX + "proxy-request-buffering"] == "on"


def test_read_timeouts_outlast_the_services_own() -> None:
    """A service's own deadline answers first (503 with Retry-After), never the proxy's 504."""
    produce = default(IngestSettings, "produce_timeout_s")
    publish = default(EntitlementsSettings, "publish_timeout")
    timeout = {
        s: float(annotations(PRODUCTION, s)[NGINX + "proxy-read-timeout"])
        for s in SERVICES.values()
    }
    assert timeout["ingest"] > produce
    assert timeout["entitlements-api"] > publish
    assert timeout["reporter"] >= max(timeout.values())


def test_controller_limits_are_within_the_services() -> None:
    """Head size and client deadlines are controller-wide (ingress-nginx-values.yaml): nginx
    refuses a head or a slow client before the services' guard would."""
    config = load_yaml(COMPONENT / "ingress-nginx-values.yaml")["controller"]["config"]
    count, each = config["large-client-header-buffers"].split()
    largest = NGINX_CLIENT_HEADER_BUFFER + int(count) * size(each) + ADDED_HEADERS
    assert largest <= default(HttpSettings, "max_header_bytes")
    assert float(config["client-header-timeout"]) <= default(HttpSettings, "header_timeout_s")
    assert float(config["client-body-timeout"]) <= default(HttpSettings, "body_timeout_s")
