"""Prometheus rules, scrape config and the Grafana dashboard: well formed, and every Meterline
metric they query is declared by the service that owns it."""

from __future__ import annotations

import importlib
import json
import re
from typing import Any

import pytest
from prometheus_client import generate_latest

from .codebase import BY_MODULE, SERVICE_LIST, defined_metrics, metric_base, owner_of_metric
from .monitoring import PROMETHEUS_RULE, REGENERATE, RULES, rendered
from .tools import DEPLOY, K8S, ROOT, load_yaml, render

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "meterline.json"
METRIC = re.compile(r"\bmeterline_[a-z0-9_]+")


def rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    dash: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dash


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def queried_metrics() -> set[str]:
    exprs = [r["expr"] for r in rules()] + dashboard_exprs()
    return {m for e in exprs for m in METRIC.findall(e)}


def balanced(expr: str) -> bool:
    depth = 0
    for ch in expr:
        depth += {"(": 1, ")": -1, "{": 1, "}": -1, "[": 1, "]": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def test_alert_rules_are_complete() -> None:
    names = [r["alert"] for r in rules()]
    assert len(names) == len(set(names))
    for rule in rules():
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert balanced(rule["expr"]), rule["alert"]


def test_dashboard_covers_lag_rates_freshness_and_reconciliation() -> None:
    d = dashboard()
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(p["title"].lower() for p in d["panels"])
    for word in ("lag", "freshness", "reconciliation", "/ s"):
        assert word in titles, word
    exprs = " ".join(dashboard_exprs())
    for needle in (
        "aggregator_lag",
        "events_accepted",
        "batch_seconds",
        "open_alerts",
        "meterline_reporter_events",
    ):
        assert needle in exprs, needle
    for p in d["panels"]:
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "prometheus", p["title"]
            assert all(balanced(t["expr"]) for t in p["targets"]), p["title"]


def test_grafana_provisioning_points_at_the_dashboard_and_prometheus() -> None:
    datasource = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    assert datasource["datasources"][0]["uid"] == dashboard()["panels"][1]["datasource"]["uid"]
    provider = load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "meterline.yml")
    compose = load_yaml(ROOT / "docker-compose.yml")["services"]["grafana"]
    mounted = {v.split(":")[1] for v in compose["volumes"]}
    assert provider["providers"][0]["options"]["path"] in mounted


def test_scrape_jobs_match_the_services_and_ports() -> None:
    jobs = {
        j["job_name"]: j
        for j in load_yaml(DEPLOY / "prometheus" / "prometheus.yml")["scrape_configs"]
    }
    for service in SERVICE_LIST:
        name = service.module.replace("_", "-")
        targets = jobs[name]["static_configs"][0]["targets"]
        assert targets == [f"{name}:{service.default_port}"]
    rule_jobs = re.search(r'job=~"([^"]+)"', rules()[0]["expr"])
    assert rule_jobs and set(rule_jobs.group(1).split("|")) == set(jobs)


@pytest.mark.parametrize("module", sorted(BY_MODULE))
def test_queried_metrics_are_declared_by_their_service(module: str) -> None:
    service = BY_MODULE[module]
    wanted = {metric_base(m) for m in queried_metrics() if owner_of_metric(m) is service}
    assert wanted, f"the dashboard and rules query nothing from {module}"
    service.require_metrics()
    missing = wanted - defined_metrics(service)
    assert not missing, f"{module} declares none of {sorted(missing)}"


@pytest.mark.parametrize(
    "metrics",
    [
        "ingest.metrics:IngestMetrics",
        "aggregator.metrics:AggregatorMetrics",
        "entitlements_api.metrics:Metrics",
        "reporter.metrics:ReporterMetrics",
    ],
)
def test_every_service_exports_process_metrics(metrics: str) -> None:
    module, name = metrics.split(":")
    registry = getattr(importlib.import_module(module), name)().registry
    exported = generate_latest(registry).decode()
    for wanted in ("process_resident_memory_bytes", "process_cpu_seconds_total", "python_info"):
        assert f"\n{wanted}" in exported or exported.startswith(wanted), (metrics, wanted)


def test_the_prometheus_rule_is_generated_from_the_rules_file() -> None:
    """One source: compose's Prometheus loads the rules file, the operator the PrometheusRule
    made from it."""
    assert PROMETHEUS_RULE.read_text() == rendered(), f"stale: run `{REGENERATE}`"


def test_the_monitoring_component_carries_the_rules_and_the_dashboard() -> None:
    docs = render(K8S / "overlays" / "production")
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert rule["spec"]["groups"] == load_yaml(RULES)["groups"]
    (board,) = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"].get("labels", {}).get("grafana_dashboard")
    ]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert board["metadata"]["name"] == "meterline-grafana-dashboard", "no hash: replaced in place"
    (text,) = board["data"].values()
    assert json.loads(text) == dashboard()
