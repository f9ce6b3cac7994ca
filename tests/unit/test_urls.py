"""Passwords never reach messages: `redact` and the adapters' connection errors."""

from __future__ import annotations

import socket

import pytest

from meterline.errors import ConfigError
from meterline.redis.connect import connect as redis_connect
from meterline.urls import redact


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("redis://:s3cret@localhost:6379/0", "redis://:***@localhost:6379/0"),
        ("rediss://user:s3cret@cache:6380", "rediss://user:***@cache:6380"),
        (
            "postgresql://app:p%40ss@db:5432/m?sslmode=require",
            "postgresql://app:***@db:5432/m?sslmode=require",
        ),
        ("postgresql://db/m?user=app&password=s3cret", "postgresql://db/m?user=app&password=***"),
        ("host=db user=app password=s3cret dbname=m", "host=db user=app password=*** dbname=m"),
        ("redis://localhost:6379", "redis://localhost:6379"),
        ("postgresql://app@db/m", "postgresql://app@db/m"),
    ],
)
def test_redact_hides_every_password_form(url: str, safe: str) -> None:
    assert redact(url) == safe


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_redis_connection_error_does_not_print_the_password() -> None:
    url = f"redis://:hunter2-secret@127.0.0.1:{_closed_port()}/0"
    with pytest.raises(ConfigError) as caught:
        redis_connect(url)
    assert "hunter2-secret" not in str(caught.value)
    assert "redis://:***@127.0.0.1" in str(caught.value)
