"""The PrometheusRule of deploy/k8s/components/monitoring, generated from the one rules file
compose's Prometheus loads (deploy/prometheus/rules/meterline.yml): the same groups, wrapped.

`python -m tests.deploy.monitoring` rewrites it; tests/deploy/test_observability.py fails while
the committed file differs from what this renders.
"""

from __future__ import annotations

from typing import Any

import yaml

from .tools import DEPLOY, K8S, load_yaml

RULES = DEPLOY / "prometheus" / "rules" / "meterline.yml"
PROMETHEUS_RULE = K8S / "components" / "monitoring" / "prometheusrule.yaml"
REGENERATE = "python -m tests.deploy.monitoring"
HEADER = (
    "# The alert rules for the Prometheus Operator. Generated from\n"
    "# deploy/prometheus/rules/meterline.yml (the file compose's Prometheus loads) by\n"
    f"# `{REGENERATE}`: edit that file, then regenerate this one.\n"
)


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (PromQL, descriptions) as `|` blocks, as in the rules file."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _string)


def prometheus_rule() -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "meterline", "labels": {"app.kubernetes.io/name": "meterline"}},
        "spec": {"groups": load_yaml(RULES)["groups"]},
    }


def rendered() -> str:
    body = yaml.dump(prometheus_rule(), Dumper=_BlockDumper, sort_keys=False, width=100)
    return HEADER + body


if __name__ == "__main__":
    PROMETHEUS_RULE.write_text(rendered())
    print(f"wrote {PROMETHEUS_RULE}")
