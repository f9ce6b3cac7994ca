"""The Dockerfile, checked statically (no Docker engine here): hadolint, a pinned base image, a
non-root user, no secret baked in, and an entry point that exists."""

from __future__ import annotations

import re

import pytest

from .codebase import BY_MODULE, cli_command
from .tools import ROOT, run, tool

DOCKERFILE = ROOT / "Dockerfile"
SECRET_WORDS = re.compile(r"(secret|password|passwd|token|api_?key|private)", re.IGNORECASE)
SECRET_VALUES = re.compile(r"(sk_(live|test)_|rk_live_|whsec_|postgres(ql)?://[^:\s]+:[^@\s]+@)")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, args = stripped.partition(" ")
            result.append((keyword.upper(), args.strip()))
    return result


def build_args() -> dict[str, str]:
    args = {}
    for keyword, rest in instructions():
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name] = value
    return args


def base_images() -> list[str]:
    """Every FROM image with ARG defaults substituted; stage names are not images."""
    images, stages = [], set()
    for keyword, rest in instructions():
        if keyword != "FROM":
            continue
        parts = rest.split()
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: build_args()[m.group(1)], parts[0])
        if image not in stages:
            images.append(image)
        if len(parts) >= 3 and parts[1].upper() == "AS":
            stages.add(parts[2])
    return images


def test_hadolint_is_clean() -> None:
    result = run(tool("hadolint"), "--failure-threshold", "info", str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_build() -> None:
    froms = [rest for keyword, rest in instructions() if keyword == "FROM"]
    assert len(froms) >= 2
    assert any("--from=" in rest for keyword, rest in instructions() if keyword == "COPY")


def test_base_images_are_pinned() -> None:
    for image in base_images():
        name, _, digest = image.partition("@")
        if digest:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), image
            continue
        tag = name.rpartition(":")[2] if ":" in name else ""
        assert tag and tag != "latest", f"{image}: pin an exact tag or a digest"
        assert re.match(r"\d+\.\d+\.\d+", tag), f"{image}: tag must carry the full version"


def test_runs_as_non_root_user() -> None:
    users = [rest for keyword, rest in instructions() if keyword == "USER"]
    assert users, "the final stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), user
    last_from = max(i for i, (k, _) in enumerate(instructions()) if k == "FROM")
    assert any(k == "USER" for k, _ in instructions()[last_from:]), "USER must be in the last stage"


def test_no_secret_is_baked_in() -> None:
    for keyword, rest in instructions():
        if keyword in ("ENV", "ARG", "LABEL"):
            for name in re.findall(r"(\w+)=", rest):
                assert not SECRET_WORDS.search(name), f"{keyword} {name}: secrets come at run time"
        assert not SECRET_VALUES.search(rest), f"{keyword} {rest}: looks like a credential"


def test_dockerignore_keeps_secrets_and_state_out() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert lines and "**" in lines, "allow-list: ignore everything, then re-include"
    for pattern in ("**/.env", "**/*.pem", ".meterline"):
        assert pattern in lines, pattern


def test_copied_paths_exist() -> None:
    for keyword, rest in instructions():
        if keyword != "COPY" or "--from=" in rest:
            continue
        for source in rest.split()[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


@pytest.mark.parametrize("module", sorted(BY_MODULE))
def test_default_and_documented_commands_exist(module: str) -> None:
    service = BY_MODULE[module]
    assert f"python -m {module}" in DOCKERFILE.read_text()
    service.require()


def test_default_command_and_migrate_exist() -> None:
    cmd = [rest for keyword, rest in instructions() if keyword == "CMD"][-1]
    assert cmd == '["python", "-m", "ingest"]'
    assert cli_command("migrate") is not None
