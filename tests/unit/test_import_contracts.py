"""The architecture contracts `make lint` checks (`lint-imports`, pyproject's [tool.importlinter]).

The checkout keeps them; a copy of it with a forbidden import added breaks the contract that
names that import: a service importing another, the Postgres driver outside a repository, the
kernel importing the operations package, the Kafka or Stripe client outside its adapter, an
example app importing the kernel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [
    "meterline", "meterline_ops", "ingest", "aggregator", "reporter", "entitlements_api",
    "bench", "openapi", "devstack", "examples",
]  # fmt: skip
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(tree / "devstack")])}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(tree / "pyproject.toml")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def copy_of_checkout(target: Path) -> Path:
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "tests", "results", "static")
    for name in PACKAGES:
        shutil.copytree(ROOT / name, target / name, ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", target / "pyproject.toml")
    return target


def test_the_checkout_keeps_every_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> str:
    """lint-imports' report on a copy with one forbidden import per contract."""
    tree = copy_of_checkout(tmp_path_factory.mktemp("contracts"))
    (tree / "ingest" / "probe_service.py").write_text("import reporter.jobs\n")
    (tree / "ingest" / "probe_sql.py").write_text("import psycopg\n")
    push = tree / "reporter" / "push.py"
    push.write_text(push.read_text() + "\nimport psycopg_pool  # noqa: E402\n")
    (tree / "meterline" / "probe_ops.py").write_text("import meterline_ops.main\n")
    (tree / "examples" / "probe_kernel.py").write_text("import meterline.catalog\n")
    (tree / "aggregator" / "probe_kafka.py").write_text("import confluent_kafka\n")
    (tree / "entitlements_api" / "probe_stripe.py").write_text("import stripe\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    return result.stdout


def test_a_service_importing_another_breaks_lint(broken: str) -> None:
    assert "No service imports another BROKEN" in broken
    assert "ingest.probe_service -> reporter.jobs" in broken


def test_psycopg_outside_a_repository_breaks_lint(broken: str) -> None:
    assert "The Postgres driver only in repository modules BROKEN" in broken
    assert "ingest.probe_sql -> psycopg" in broken


def test_the_reporter_domain_importing_the_driver_breaks_lint(broken: str) -> None:
    """No reporter module is excepted any more (they once were, until their SQL moved)."""
    assert "reporter.push -> psycopg_pool" in broken


def test_the_kernel_importing_ops_breaks_lint(broken: str) -> None:
    assert "Layers: " in broken and "meterline.probe_ops -> meterline_ops.main" in broken


def test_an_example_importing_the_kernel_breaks_lint(broken: str) -> None:
    assert (
        "The example apps reach Meterline only through the SDK and its HTTP APIs BROKEN" in broken
    )
    assert "examples.probe_kernel -> meterline.catalog" in broken


def test_the_kafka_client_outside_its_adapter_breaks_lint(broken: str) -> None:
    assert "The Kafka client only in meterline.kafka BROKEN" in broken
    assert "aggregator.probe_kafka -> confluent_kafka" in broken


def test_the_stripe_library_outside_the_gateway_breaks_lint(broken: str) -> None:
    assert "The Stripe library only in the gateway, meterline.stripe BROKEN" in broken
    assert "entitlements_api.probe_stripe -> stripe" in broken
