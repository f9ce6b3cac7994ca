"""The operator commands, run as a user would run them."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from meterline.postgres.migrate import available_migrations
from meterline_devstack.stack import DevStack


def meterline(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "METERLINE_HOME": "/nonexistent", **env}
    return subprocess.run(
        [sys.executable, "-m", "meterline_ops.main", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def empty_database(backing: DevStack) -> Iterator[str]:
    """A database with no schema at all."""
    name = f"e_{uuid.uuid4().hex[:16]}"
    base = backing.urls["postgres"].rsplit("/", 1)[0]
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield f"{base}/{name}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_migrate_twice_changes_nothing(empty_database: str) -> None:
    env = {"METERLINE_DATABASE_URL": empty_database}
    first = meterline("migrate", env=env)
    assert first.returncode == 0, first.stderr
    names = [m.name for m in available_migrations()]
    assert [line.split("_", 1)[1] for line in first.stdout.splitlines()] == names
    with psycopg.connect(empty_database) as conn:
        before = conn.execute("SELECT version, applied_at FROM schema_migrations").fetchall()
    second = meterline("migrate", env=env)
    assert (second.returncode, second.stdout.strip()) == (0, "schema is up to date")
    with psycopg.connect(empty_database) as conn:
        after = conn.execute("SELECT version, applied_at FROM schema_migrations").fetchall()
    assert after == before and len(after) == len(names)


def test_a_bad_database_url_is_one_clear_line() -> None:
    for url in ("postgresql://nobody@127.0.0.1:1/x", "mysql://x", "postgresql://[bad"):
        result = meterline("migrate", env={"METERLINE_DATABASE_URL": url})
        assert result.returncode != 0
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) <= 2
        assert "METERLINE_DATABASE_URL" in result.stderr or "Postgres" in result.stderr


def test_tenants_and_keys(pg_conninfo: str) -> None:
    env = {"METERLINE_DATABASE_URL": pg_conninfo}
    assert meterline("tenants", "create", "acme", env=env).returncode == 0
    created = meterline(
        "keys", "create", "--tenant", "acme", "--scope", "ingest", "--scope", "read", env=env
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("mlk_key_")
    key_id = key.split("_")[1] + "_" + key.split("_")[2]
    listed = meterline("keys", "list", "--tenant", "acme", env=env)
    assert key_id in listed.stdout and "active" in listed.stdout and key not in listed.stdout
    assert meterline("keys", "revoke", key_id, env=env).returncode == 0
    assert "revoked" in meterline("keys", "list", "--tenant", "acme", env=env).stdout
    bad = meterline("keys", "create", "--tenant", "acme", "--scope", "write", env=env)
    assert bad.returncode == 2 and "scope" in bad.stderr
    missing = meterline("keys", "create", "--tenant", "nobody", "--scope", "read", env=env)
    assert missing.returncode == 2 and "no tenant" in missing.stderr


def test_config_check_lists_every_problem() -> None:
    result = meterline(
        "config",
        "check",
        env={"METERLINE_DATABASE_URL": "mysql://x", "METERLINE_KAFKA_BOOTSTRAP": "nohost"},
    )
    assert result.returncode == 1
    for var in ("METERLINE_DATABASE_URL", "METERLINE_KAFKA_BOOTSTRAP", "METERLINE_REDIS_URL"):
        assert var in result.stderr
