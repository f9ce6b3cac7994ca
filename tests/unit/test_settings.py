"""Settings: every problem at once, environment first, the dev stack's file as fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from meterline.errors import ConfigError
from meterline.settings import DatabaseSettings, load_section, load_settings
from meterline.stackfile import Stack, read_stack, remove_stack, write_stack

FULL = {
    "METERLINE_KAFKA_BOOTSTRAP": "127.0.0.1:9092",
    "METERLINE_DATABASE_URL": "postgresql://u@127.0.0.1:5432/db",
    "METERLINE_REDIS_URL": "redis://127.0.0.1:6379/0",
    "METERLINE_STRIPE_API_BASE": "http://127.0.0.1:12111",
}


def test_a_complete_environment_loads(tmp_path: Path) -> None:
    s = load_settings({**FULL, "METERLINE_HOME": str(tmp_path), "METERLINE_INGEST_PORT": "9001"})
    assert s.kafka.bootstrap == "127.0.0.1:9092"
    assert s.kafka.topic == "meterline.usage.v1"
    assert s.service.ingest_port == 9001


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    env = {
        "METERLINE_HOME": str(tmp_path),
        "METERLINE_KAFKA_BOOTSTRAP": "no-port",
        "METERLINE_DATABASE_URL": "mysql://x",
        "METERLINE_INGEST_PORT": "eighty",
    }
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    message = info.value.message
    for var in (
        "METERLINE_KAFKA_BOOTSTRAP",
        "METERLINE_DATABASE_URL",
        "METERLINE_REDIS_URL",
        "METERLINE_STRIPE_API_BASE",
        "METERLINE_INGEST_PORT",
    ):
        assert var in message
    assert "meterline dev up" in message


def test_urls_fall_back_to_the_running_stack(tmp_path: Path) -> None:
    urls = {
        "kafka": "127.0.0.1:1",
        "postgres": "postgresql://p@127.0.0.1:2/m",
        "redis": "redis://127.0.0.1:3/0",
        "stripe": "http://127.0.0.1:4",
    }
    write_stack(tmp_path, Stack(urls, {"redis": 42}, 7))
    s = load_settings({"METERLINE_HOME": str(tmp_path), "METERLINE_REDIS_URL": "redis://env:6/0"})
    assert (s.kafka.bootstrap, s.database.url) == ("127.0.0.1:1", "postgresql://p@127.0.0.1:2/m")
    assert s.redis.url == "redis://env:6/0"  # the environment wins
    stack = read_stack(tmp_path)
    assert stack is not None and stack.pids == {"redis": 42} and stack.supervisor_pid == 7
    remove_stack(tmp_path)
    assert read_stack(tmp_path) is None


def test_one_section_alone(tmp_path: Path) -> None:
    env = {
        "METERLINE_HOME": str(tmp_path),
        "METERLINE_DATABASE_URL": FULL["METERLINE_DATABASE_URL"],
    }
    assert load_section(DatabaseSettings, env).url == FULL["METERLINE_DATABASE_URL"]
    with pytest.raises(ConfigError, match="METERLINE_DATABASE_URL"):
        load_section(DatabaseSettings, {"METERLINE_HOME": str(tmp_path)})


def test_a_corrupt_stack_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "stack.json").write_text("{not json")
    assert read_stack(tmp_path) is None
