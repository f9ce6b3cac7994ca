"""docker-compose.yml: valid against the Compose specification, and consistent with the code
(commands, ports, health checks, settings), Kafka in KRaft mode with a three-broker profile."""

from __future__ import annotations

import re
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
VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = load_yaml(COMPOSE)
    return doc


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${VAR:-default}` substitution, `$$` being a literal `$`."""
    return VARIABLE.sub(lambda m: env.get(m.group(1)) or m.group(2) or "", value).replace("$$", "$")


def environment(service: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, str]:
    raw = service.get("environment", {})
    return {k: interpolate(str(v), env or {}) for k, v in raw.items()}


def cluster_env() -> dict[str, str]:
    pairs = [line.split("=", 1) for line in CLUSTER_ENV.read_text().splitlines()]
    return {k: v for k, v in (p for p in pairs if len(p) == 2 and not p[0].startswith("#"))}


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
    assert environment(init)["REPLICATION_FACTOR"] == "1"


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
    default_base = environment(services()["ingest"])["METERLINE_STRIPE_API_BASE"]
    assert default_base == "http://stripe-emulator:12111"


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
    assert retention["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
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
