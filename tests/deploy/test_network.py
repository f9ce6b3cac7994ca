"""NetworkPolicies of the production overlay (components/network-policy): everything denied,
then each workload allowed what its code reads (the settings sections it loads) and no more,
and the HTTP services reached from the ingress controller."""

from __future__ import annotations

from typing import Any

import pytest

from .codebase import SERVICE_LIST, shared_sections_used
from .test_k8s import config, find

OVERLAYS = ["overlays/production", "overlays/production-keda"]
DNS = 53
HTTPS = 443
POSTGRES = {5432}
REDIS = {6379, 6380}
INGRESS_CONTROLLER = "ingress-nginx"
PROMETHEUS = "monitoring"
# The Jobs run `meterline` commands: migrate and retention work in Postgres alone; the
# nightly reconciliation reads Postgres and Stripe (reporter/jobs.py).
JOB_NEEDS = {
    "meterline-migrate": {"DatabaseSettings"},
    "meterline-reconcile": {"DatabaseSettings", "StripeSettings"},
    "meterline-retention": {"DatabaseSettings"},
}


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    labels: dict[str, str] = spec["template"]["metadata"]["labels"]
    return labels


def workloads(kustomization: str) -> dict[str, dict[str, str]]:
    found = [*find(kustomization, "Deployment"), *find(kustomization, "Job")]
    found += find(kustomization, "CronJob")
    return {w["metadata"]["name"]: pod_labels(w) for w in found}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and In / NotIn / Exists)."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for e in selector.get("matchExpressions", []):
        key, op, values = e["key"], e["operator"], e.get("values", [])
        ok = {
            "In": labels.get(key) in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def rules(kustomization: str, labels: dict[str, str], kind: str) -> list[dict[str, Any]]:
    """The `ingress` or `egress` rules of every policy that selects a pod with `labels`."""
    found: list[dict[str, Any]] = []
    for policy in find(kustomization, "NetworkPolicy"):
        spec = policy["spec"]
        if kind.capitalize() in spec["policyTypes"] and selects(spec["podSelector"], labels):
            found += spec.get(kind, [])
    return found


def egress_ports(kustomization: str, labels: dict[str, str]) -> dict[int, list[Any]]:
    """Port -> the `to:` peers allowed on it (an empty list: any destination)."""
    ports: dict[int, list[Any]] = {}
    for rule in rules(kustomization, labels, "egress"):
        for port in rule["ports"]:
            ports.setdefault(port["port"], []).extend(rule.get("to", []))
    return ports


def needs(kustomization: str, name: str) -> set[int]:
    """The ports a workload's code connects to, from the settings sections it loads."""
    by_name = {s.module.replace("_", "-"): s for s in SERVICE_LIST}
    if name in by_name:
        sections = {c.__name__ for c in shared_sections_used(by_name[name])}
    else:
        sections = JOB_NEEDS[name]
    kafka = {
        int(b.rsplit(":", 1)[1])
        for b in config(kustomization)["METERLINE_KAFKA_BOOTSTRAP"].split(",")
    }
    ports: set[int] = set()
    for section, wanted in (
        ("KafkaSettings", kafka),
        ("DatabaseSettings", POSTGRES),
        ("RedisSettings", REDIS),
        ("StripeSettings", {HTTPS}),
    ):
        if section in sections:
            ports |= wanted
    return ports


@pytest.mark.parametrize("kustomization", OVERLAYS)
def test_everything_is_denied_by_default(kustomization: str) -> None:
    deny = [
        p["spec"]
        for p in find(kustomization, "NetworkPolicy")
        if p["spec"]["podSelector"] == {} and not {"ingress", "egress"} & set(p["spec"])
    ]
    assert any(set(d["policyTypes"]) == {"Ingress", "Egress"} for d in deny)


@pytest.mark.parametrize("kustomization", OVERLAYS)
def test_each_workload_reaches_only_what_its_code_reads(kustomization: str) -> None:
    found = workloads(kustomization)
    assert set(JOB_NEEDS) | {s.module.replace("_", "-") for s in SERVICE_LIST} == set(found)
    for name, labels in found.items():
        allowed = egress_ports(kustomization, labels)
        assert allowed.pop(DNS), f"{name}: no DNS"
        assert set(allowed) == needs(kustomization, name), name


@pytest.mark.parametrize("kustomization", OVERLAYS)
def test_https_goes_to_public_addresses_only(kustomization: str) -> None:
    for name, labels in workloads(kustomization).items():
        peers = egress_ports(kustomization, labels).get(HTTPS)
        if peers is None:
            continue
        assert peers, f"{name}: 443 open to every destination"
        for peer in peers:
            assert peer["ipBlock"]["cidr"] == "0.0.0.0/0", name
            assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"} <= set(
                peer["ipBlock"]["except"]
            ), name


def namespaces(rule: dict[str, Any]) -> set[str]:
    return {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for peer in rule["from"]
    }


@pytest.mark.parametrize("kustomization", OVERLAYS)
def test_http_services_are_reached_from_the_ingress_controller(kustomization: str) -> None:
    """What the Ingress routes to is reached from the ingress controller, /metrics from
    Prometheus; nothing else comes in."""
    exposed = {
        p["backend"]["service"]["name"]
        for ingress in find(kustomization, "Ingress")
        for rule in ingress["spec"]["rules"]
        for p in rule["http"]["paths"]
    }
    assert exposed
    for name, labels in workloads(kustomization).items():
        allowed = rules(kustomization, labels, "ingress")
        sources = set().union(*(namespaces(r) for r in allowed)) if allowed else set()
        expected = {INGRESS_CONTROLLER} if name in exposed else set()
        if name in {s.module.replace("_", "-") for s in SERVICE_LIST}:
            expected.add(PROMETHEUS)
        assert sources == expected, name
        for rule in allowed:
            assert [p["port"] for p in rule["ports"]] == ["http"], name
