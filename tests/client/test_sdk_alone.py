"""The SDK installed alone into a fresh virtualenv, without the server: its metadata declares
only httpx and orjson (FastAPI as the `fastapi` extra), it imports and carries `py.typed`, and
its own tests (sdk/tests) pass there against the installed copy.

Offline by design: the wheel is built with this interpreter's setuptools and installed with
`--no-index --no-deps`; the fresh virtualenv reaches its dependencies through a directory of
links to exactly the distributions they need (taken from the environment running this test),
so nothing of the server is importable there.
"""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

SDK = Path(__file__).resolve().parents[2] / "sdk"
BARE_CHECK = """
import importlib.util, json, pathlib, sys
import meterline_sdk
from meterline_sdk import AsyncEntitlements, AsyncMeterline, Entitlements, Meterline
try:
    import meterline_sdk.fastapi
    fastapi_error = ""
except ImportError as exc:
    fastapi_error = str(exc)
print(json.dumps({
    "file": meterline_sdk.__file__,
    "typed": (pathlib.Path(meterline_sdk.__file__).parent / "py.typed").is_file(),
    "server": importlib.util.find_spec("meterline") is not None,
    "fastapi_error": fastapi_error,
}))
"""


def closure(names: list[str]) -> set[str]:
    """The distributions `names` need, transitively, without extras (from this environment)."""
    found: set[str] = set()
    todo = [canonicalize_name(n) for n in names]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        for text in metadata.requires(name) or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return found


def link(names: set[str], into: Path) -> Path:
    """A directory of links to the importable files and the metadata of `names`."""
    into.mkdir()
    for name in names:
        dist = metadata.distribution(name)
        tops = {f.parts[0] for f in dist.files or [] if f.parts[0] not in ("..", "__pycache__")}
        for top in tops:
            target = Path(str(dist.locate_file(top)))
            if target.exists() and not (into / top).exists():
                (into / top).symlink_to(target)
    return into


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a fresh virtualenv's python with the SDK wheel installed, a copy of sdk/)."""
    if importlib.util.find_spec("flit_core") is None:
        pytest.fail("flit-core (the SDK's build backend, dev extra) is missing: make install")
    root = tmp_path_factory.mktemp("sdk-alone")
    source = root / "sdk"
    shutil.copytree(
        SDK, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    wheels = root / "wheels"
    run([*pip, "wheel", "--no-deps", "--no-index", "--no-build-isolation", "-w", wheels, source])
    run([sys.executable, "-m", "venv", "--without-pip", root / "venv"])
    python = root / "venv" / "bin" / "python"
    wheel = next(wheels.glob("meterline_sdk-*.whl"))
    run([*pip, "--python", python, "install", "--no-deps", "--no-index", wheel])
    return python, source


def run(args: list[object], **kw: object) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=300,
        **kw,  # type: ignore[call-overload]
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return str(done.stdout)


def test_the_sdk_declares_only_httpx_and_orjson(venv: tuple[Path, Path]) -> None:
    python, _ = venv
    code = "import importlib.metadata as m, json; print(json.dumps(m.requires('meterline-sdk')))"
    requires = [Requirement(r) for r in json.loads(run([python, "-c", code]))]
    plain = {r.name for r in requires if r.marker is None}
    extras = {r.name for r in requires if r.marker is not None}
    assert plain == {"httpx", "orjson"}
    assert extras == {"fastapi"} and all("extra" in str(r.marker) for r in requires if r.marker)


def test_the_sdk_imports_without_the_server_or_fastapi(
    venv: tuple[Path, Path], tmp_path: Path
) -> None:
    python, _ = venv
    deps = link(closure(["httpx", "orjson"]), tmp_path / "deps")
    env = {"PYTHONPATH": str(deps), "PATH": "/usr/bin:/bin"}
    found = json.loads(run([python, "-P", "-c", BARE_CHECK], cwd=tmp_path, env=env))
    assert found["file"].startswith(str(python.parent.parent)), found
    assert found["typed"] and not found["server"], found
    assert 'pip install "meterline-sdk[fastapi]"' in found["fastapi_error"]


def test_the_sdk_tests_pass_against_the_installed_sdk(
    venv: tuple[Path, Path], tmp_path: Path
) -> None:
    python, source = venv
    deps = link(closure(["httpx", "orjson", "fastapi", "pytest"]), tmp_path / "deps")
    env = {"PYTHONPATH": str(deps), "PATH": "/usr/bin:/bin"}
    check = "import importlib.util as u; assert u.find_spec('meterline') is None"
    run([python, "-P", "-c", check], cwd=tmp_path, env=env)
    args = ["-m", "pytest", "-q", "--import-mode=importlib", "-c", source / "pyproject.toml"]
    out = run([python, "-P", *args, "--rootdir", source, source / "tests"], cwd=tmp_path, env=env)
    assert " passed" in out and "skipped" not in out, out
