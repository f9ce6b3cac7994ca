"""docker-compose.yml: valid against the Compose specification, and consistent with the code
(commands, ports, health checks, settings), Kafka in KRaft mode with a three-broker profile."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from meterline.settings import TOPIC_DLQ, TOPIC_USAGE
from reporter.settings import ReporterSettings
from stripe_emulator.__main__ import parse_args

from .codebase import (
    BY_MODULE,
    SERVICE_LIST,
    Service,
    all_known_settings,
    cli_command,
    settings_of,
)
from .tools import DEPLOY, ROOT, load_yaml, run, tool

COMPOSE = ROOT / "docker-compose.yml"
CLUSTER_ENV = DEPLOY / "compose" / "kafka-cluster.env"
DEV_ENV = DEPLOY / "compose" / "dev.env"
VARIABLE = re.compile(r"\$\{(\w+)(?:(:?)([-?])([^}]*))?\}")
GUARD = "secrets-check"


class MissingVariables(Exception):
    """What compose refuses to start without (`${VAR:?message}` with VAR unset or empty)."""

    def __init__(self, names: set[str]) -> None:
        super().__init__(", ".join(sorted(names)))
        self.names = names


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = load_yaml(COMPOSE)
    return doc


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def interpolate(value: str, env: dict[str, str], missing: set[str] | None = None) -> str:
    """Compose's interpolation: `${VAR}`, `${VAR:-default}` / `${VAR-default}`, and
    `${VAR:?message}` / `${VAR?message}`, which stop compose when VAR is unset (or empty, with
    the colon): raises MissingVariables, or adds to `missing` when given. `$$` is a `$`."""
    absent: set[str] = set()

    def substitute(m: re.Match[str]) -> str:
        name, colon, op, arg = m.groups()
        given = env.get(name)
        unset = given is None or (bool(colon) and given == "")
        if op == "?" and unset:
            absent.add(name)
        return arg if op == "-" and unset else (given or "")

    result = VARIABLE.sub(substitute, value).replace("$$", "$")
    if absent and missing is None:
        raise MissingVariables(absent)
    (missing if missing is not None else absent).update(absent)
    return result


def render(env: dict[str, str]) -> dict[str, Any]:
    """The whole file interpolated as `docker compose config` would, with `env` (the shell and
    the env files compose read); MissingVariables names every required variable absent."""
    missing: set[str] = set()

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return interpolate(node, env, missing)
        if isinstance(node, list):
            return [walk(n) for n in node]
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        return node

    doc: dict[str, Any] = walk(compose())
    if missing:
        raise MissingVariables(missing)
    return doc


def env_file(path: Path) -> dict[str, str]:
    pairs = [line.split("=", 1) for line in path.read_text().splitlines()]
    return {k: v for k, v in (p for p in pairs if len(p) == 2 and not p[0].startswith("#"))}


def compose_env(*files: Path, shell: dict[str, str] | None = None) -> dict[str, str]:
    """The variables compose interpolates with: `.env` only when no `--env-file` is given,
    else only the files given (later ones win), and the shell's over both."""
    read = files or [p for p in (ROOT / ".env",) if p.exists()]
    merged: dict[str, str] = {}
    for path in read:
        merged.update(env_file(path))
    return {**merged, **(shell or {})}


def dev_env() -> dict[str, str]:
    return env_file(DEV_ENV)


def cluster_env() -> dict[str, str]:
    return env_file(CLUSTER_ENV)


def environment(service: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, str]:
    """A service's environment as compose gives it; with no `env`, a laptop's (dev.env)."""
    raw = service.get("environment", {})
    given = dev_env() if env is None else env
    return {k: interpolate(str(v), given) for k, v in raw.items()}


def compose_name(service: Service) -> str:
    return service.module.replace("_", "-")


def test_valid_against_the_compose_specification() -> None:
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_images_are_pinned() -> None:
    for name, svc in services().items():
        image = interpolate(svc["image"], {})
        assert ":" in image and not image.endswith(":latest"), f"{name}: {image}"


def test_every_service_has_resource_limits() -> None:
    for name, svc in services().items():
        limits = svc.get("deploy", {}).get("resources", {}).get("limits", {})
        assert {"cpus", "memory"} <= set(limits), name


def test_published_ports_bind_loopback_only() -> None:
    for name, svc in services().items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"


def kafka_brokers() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services().items() if re.fullmatch(r"kafka-\d", n)}


def test_kafka_runs_in_kraft_mode_on_the_official_image() -> None:
    brokers = kafka_brokers()
    assert len(brokers) == 3
    for name, svc in brokers.items():
        assert svc["image"].startswith("apache/kafka:"), name
        env = environment(svc)
        assert "controller" in env["KAFKA_PROCESS_ROLES"]
        assert not any("ZOOKEEPER" in key for key in env), name
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
    assert "profiles" not in brokers["kafka-1"], "one broker runs without any profile"


def test_three_broker_profile_replicates_three_ways() -> None:
    env = cluster_env()
    profile = env["COMPOSE_PROFILES"]
    node_ids = set()
    for name, svc in kafka_brokers().items():
        if name != "kafka-1":
            assert svc["profiles"] == [profile], name
        resolved = environment(svc, env)
        node_ids.add(resolved["KAFKA_NODE_ID"])
        assert resolved["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert resolved["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        assert resolved["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert resolved["KAFKA_CONTROLLER_QUORUM_VOTERS"].count("@") == 3
    assert node_ids == {"1", "2", "3"}
    assert env["METERLINE_KAFKA_BOOTSTRAP"].count(",") == 2


def test_topics_are_created_with_the_configured_replication() -> None:
    init = services()["kafka-init"]
    script = "\n".join(init["command"])
    for topic in (TOPIC_USAGE, TOPIC_DLQ):
        assert f"create {topic} " in script
    assert "--replication-factor" in script and "min.insync.replicas" in script
    resolved = environment(init, cluster_env())
    assert (resolved["REPLICATION_FACTOR"], resolved["MIN_INSYNC_REPLICAS"]) == ("3", "2")
    assert environment(init, {})["REPLICATION_FACTOR"] == "1"


def test_migrations_run_once_before_the_services() -> None:
    migrate = services()["migrate"]
    assert migrate["command"] == ["meterline", "migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for service in SERVICE_LIST:
        depends = services()[compose_name(service)]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["kafka-init"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("module", sorted(BY_MODULE))
def test_service_command_port_and_health_check(module: str) -> None:
    service = BY_MODULE[module]
    svc = services()[compose_name(service)]
    assert svc["command"] == ["python", "-m", module]
    port = environment(svc)[service.port_env]
    assert port == str(service.default_port)
    assert svc["ports"] == [f"127.0.0.1:{port}:{port}"]
    probe = " ".join(svc["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/healthz" in probe
    service.require()


@pytest.mark.parametrize("module", sorted(BY_MODULE))
def test_service_settings_match_the_code(module: str) -> None:
    service = BY_MODULE[module]
    service.require()
    env = environment(services()[compose_name(service)])
    reads = settings_of(service)
    missing = [name for name, required in reads.items() if required and name not in env]
    assert not missing, f"{module} requires {missing}"
    assert service.port_env in reads, f"{module} does not read {service.port_env}"


def test_every_variable_set_is_read_by_the_code() -> None:
    known = all_known_settings()
    pending = {s.port_env for s in SERVICE_LIST if not s.exists}
    for service in SERVICE_LIST:
        env = environment(services()[compose_name(service)])
        unknown = {k for k in env if k.startswith("METERLINE_")} - known - pending
        assert not unknown, f"{service.module}: no settings class reads {sorted(unknown)}"


def test_stripe_emulator_in_the_dev_profile() -> None:
    emulator = services()["stripe-emulator"]
    assert emulator["profiles"] == ["dev"]
    command = emulator["command"]
    assert command[:3] == ["python", "-m", "stripe_emulator"]
    args = parse_args(command[3:])
    assert (args.host, args.port) == ("0.0.0.0", 12111)
    dev_base = environment(services()["ingest"], dev_env())["METERLINE_STRIPE_API_BASE"]
    assert dev_base == f"http://stripe-emulator:{args.port}"
    assert dev_env()["COMPOSE_PROFILES"].split(",") == ["dev"]
    production = {k: "a-real-secret" for k in dev_env() if k != "COMPOSE_PROFILES"}
    production.pop("METERLINE_STRIPE_API_BASE")
    base = environment(services()["ingest"], production)["METERLINE_STRIPE_API_BASE"]
    assert base == "https://api.stripe.com"


def test_observability_profile_mounts_existing_files() -> None:
    for name in ("prometheus", "grafana"):
        svc = services()[name]
        assert svc["profiles"] == ["observability"]
        for volume in svc["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source}"


def test_retention_runs_daily_after_reconciliation() -> None:
    retention = services()["retention"]
    done = {"condition": "service_completed_successfully"}
    assert retention["depends_on"] == {"migrate": done, GUARD: done}
    assert retention["init"] is True, "sh as PID 1 would ignore SIGTERM"
    assert {"cpus", "memory"} <= set(retention["deploy"]["resources"]["limits"])
    shell, flag, script = retention["command"]
    assert (shell, flag) == ("sh", "-c")
    script = interpolate(script, {})
    assert script.startswith("while :; do sleep $(( (86400 + 4 * 3600 - $(date +%s) % 86400)")
    assert script.endswith("; meterline retention run; done")
    assert cli_command("retention", "run") is not None
    reconcile_hour = ReporterSettings().reconcile_hour_utc
    assert reconcile_hour < 4, "retention runs after the reporter's nightly reconciliation"


def test_retention_window_matches_ingest_lateness() -> None:
    env = environment(services()["retention"])
    unknown = {k for k in env if k.startswith("METERLINE_")} - all_known_settings()
    assert not unknown, f"no settings class reads {sorted(unknown)}"
    ingest = environment(services()["ingest"]).get("METERLINE_INGEST_LATENESS_DAYS", "35")
    assert env.get("METERLINE_RETENTION_LATENESS_DAYS", "35") == ingest


SECRETS = {
    "POSTGRES_PASSWORD",
    "METERLINE_STRIPE_API_KEY",
    "METERLINE_STRIPE_WEBHOOK_SECRET",
    "GRAFANA_ADMIN_PASSWORD",
}


def production_secrets() -> dict[str, str]:
    return {name: f"real-{name.lower()}" for name in SECRETS}


@pytest.mark.parametrize(
    ("files", "why"),
    [
        ((), "no .env, nothing in the environment"),
        ((CLUSTER_ENV,), "--env-file kafka-cluster.env: .env is not read"),
    ],
)
def test_compose_stops_without_the_secrets(files: tuple[Path, ...], why: str) -> None:
    """No secret has a default: compose names each one missing instead of starting with a
    laptop's values."""
    with pytest.raises(MissingVariables) as refused:
        render(compose_env(*files))
    assert refused.value.names == SECRETS, why


def test_no_dev_value_is_a_default() -> None:
    """The public values live in dev.env alone, never as a `${VAR:-default}` of the file."""
    defaults = {
        m.group(4)
        for m in VARIABLE.finditer(COMPOSE.read_text())
        if m.group(3) == "-" and m.group(4)
    }
    dev_values = {v for k, v in dev_env().items() if k not in {"COMPOSE_PROFILES"}}
    assert not defaults & dev_values


def test_the_cluster_profile_starts_with_secrets_from_the_environment() -> None:
    secrets = production_secrets()
    doc = render(compose_env(CLUSTER_ENV, shell=secrets))
    env = doc["services"]["ingest"]["environment"]
    assert env["METERLINE_KAFKA_BOOTSTRAP"] == cluster_env()["METERLINE_KAFKA_BOOTSTRAP"]
    assert env["METERLINE_STRIPE_API_KEY"] == secrets["METERLINE_STRIPE_API_KEY"]
    assert secrets["POSTGRES_PASSWORD"] in env["METERLINE_DATABASE_URL"]


def guard(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the `secrets-check` service's script here, with the environment compose would give
    it (the mounted dev.env read from the repository)."""
    svc = services()[GUARD]
    assert svc["entrypoint"] == ["/bin/sh", "-c"]
    (script,) = svc["command"]
    given = {**environment(svc, env), "DEV_ENV": str(DEV_ENV), "PATH": os.environ["PATH"]}
    return subprocess.run(
        ["/bin/sh", "-c", interpolate(script, {})], env=given, capture_output=True, text=True
    )


@pytest.mark.parametrize(
    ("profiles", "dev_keys", "refused"),
    [
        ("dev", "all", False),
        ("dev,observability", "all", False),
        ("", "all", True),
        ("observability", "all", True),
        ("kafka-cluster", ["GRAFANA_ADMIN_PASSWORD"], True),
        ("kafka-cluster", ["METERLINE_STRIPE_API_BASE"], True),
        ("", [], False),
        ("observability,kafka-cluster", [], False),
    ],
)
def test_dev_values_are_refused_outside_the_dev_profile(
    profiles: str, dev_keys: str | list[str], refused: bool
) -> None:
    dev = {k: v for k, v in dev_env().items() if k != "COMPOSE_PROFILES"}
    chosen = dev if dev_keys == "all" else {k: dev[k] for k in dev_keys}
    env = {**production_secrets(), **chosen, "COMPOSE_PROFILES": profiles}
    result = guard(env)
    assert (result.returncode != 0) == refused, result.stderr
    for key in chosen if refused else []:
        assert key in result.stderr


def test_the_guard_compares_every_dev_value_and_guards_every_reader() -> None:
    """Each value of dev.env reaches the check, and every service given one of them (or the
    Postgres it initialises) starts only after the check passed."""
    svc = services()[GUARD]
    source, target, mode = svc["volumes"][0].split(":")
    assert (ROOT / source).resolve() == DEV_ENV and mode == "ro"
    assert svc["environment"]["DEV_ENV"] == target
    assert "profiles" not in svc, "the check runs in every profile"
    assert set(dev_env()) <= set(svc["environment"])
    dev_keys = set(dev_env()) - {"COMPOSE_PROFILES"}
    for name, svc in services().items():
        raw = " ".join(str(v) for v in svc.get("environment", {}).values())
        if name != GUARD and any(f"${{{key}" in raw for key in dev_keys):
            condition = svc["depends_on"][GUARD]["condition"]
            assert condition == "service_completed_successfully", name
