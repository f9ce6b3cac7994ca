"""Backing services as containers, used instead of the embedded ones when a Docker engine answers.

Needs the optional `testcontainers` package (`pip install 'meterline[containers]'`). Containers
are not supervised (Docker restarts them); `stop()` removes them.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any, Protocol

IMAGES = {
    "postgres": "postgres:17-alpine",
    "redis": "redis:7-alpine",
    "kafka": "apache/kafka:3.9.1",
}


class Container(Protocol):
    def stop(self) -> None: ...


def docker_answers(socket_path: str | None = None) -> bool:
    """True when testcontainers is installed and the Docker engine answers `GET /_ping`."""
    try:
        import testcontainers  # noqa: F401
    except ImportError:
        return False
    path = socket_path or os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not path.startswith("unix://") and socket_path is None:
        return True  # a remote engine: let testcontainers try it
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(path.removeprefix("unix://"))
            s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            return b" 200 " in s.recv(64)
    except OSError:
        return False


def start_container(name: str) -> tuple[Container, str]:
    """Start the container for `name` (postgres, redis or kafka); return it and its URL."""
    return _STARTERS[name]()


def _postgres() -> tuple[Any, str]:
    from testcontainers.postgres import PostgresContainer

    c = PostgresContainer(IMAGES["postgres"], dbname="meterline", driver=None).start()
    return c, c.get_connection_url()


def _redis() -> tuple[Any, str]:
    from testcontainers.redis import RedisContainer

    c = RedisContainer(IMAGES["redis"]).start()
    return c, f"redis://{c.get_container_host_ip()}:{c.get_exposed_port(6379)}/0"


def _kafka() -> tuple[Any, str]:
    from testcontainers.kafka import KafkaContainer

    c = KafkaContainer(IMAGES["kafka"]).with_kraft().start()
    return c, str(c.get_bootstrap_server())


_STARTERS: dict[str, Callable[[], tuple[Any, str]]] = {
    "postgres": _postgres,
    "redis": _redis,
    "kafka": _kafka,
}
