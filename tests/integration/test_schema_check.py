"""Every service refuses to start on a schema older than its code, with a clear message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from meterline.postgres.migrate import available_migrations
from meterline.postgres.schema import SchemaBehind, require_current_schema
from meterline_devstack.process import free_port

ROOT = Path(__file__).resolve().parents[2]
NEWEST = available_migrations()[-1]
NEWEST_NAME = f"{NEWEST.version:04d}_{NEWEST.name}"


def _forget_newest(conninfo: str) -> None:
    """Make the database look as if the newest migration had not been applied."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("DELETE FROM schema_migrations WHERE version = %s", (NEWEST.version,))


@pytest.mark.integration
def test_a_current_schema_passes_and_a_newer_one_too(pg_conninfo: str) -> None:
    with psycopg.connect(pg_conninfo, autocommit=True) as conn:
        require_current_schema(conn, "test")
        conn.execute(
            "INSERT INTO schema_migrations (version, name, sha256) VALUES (9999, 'future', 'x')"
        )
        require_current_schema(conn, "test")  # a rollback runs on a migrated schema


@pytest.mark.integration
def test_a_missing_migration_is_named_with_the_command_that_applies_it(pg_conninfo: str) -> None:
    _forget_newest(pg_conninfo)
    with psycopg.connect(pg_conninfo) as conn, pytest.raises(SchemaBehind) as caught:
        require_current_schema(conn, "reporter")
    assert [m.version for m in caught.value.missing] == [NEWEST.version]
    assert NEWEST_NAME in caught.value.message
    assert "meterline migrate" in caught.value.message


@pytest.mark.integration
def test_a_database_never_migrated_is_refused_and_left_untouched(pg_conninfo: str) -> None:
    with psycopg.connect(pg_conninfo, autocommit=True) as conn:
        conn.execute("DROP TABLE schema_migrations")
        with pytest.raises(SchemaBehind) as caught:
            require_current_schema(conn, "ingest")
        assert len(caught.value.missing) == len(available_migrations())
        gone = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
        assert gone == (None,)  # the check creates nothing


@pytest.mark.integration
@pytest.mark.parametrize("service", ["ingest", "entitlements_api", "reporter", "aggregator"])
def test_each_service_exits_with_the_message(service: str, service_env: dict[str, str]) -> None:
    _forget_newest(service_env["METERLINE_DATABASE_URL"])
    env = {
        **service_env,
        "PYTHONPATH": str(ROOT),
        "METERLINE_AGGREGATOR_PORT": str(free_port()),
        "METERLINE_INGEST_PORT": str(free_port()),
        "METERLINE_ENTITLEMENTS_PORT": str(free_port()),
        "METERLINE_REPORTER_PORT": str(free_port()),
        "METERLINE_REPORTER_SCHEDULER_ENABLED": "false",
    }
    done = subprocess.run(
        [sys.executable, "-m", service],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "older than this code" in done.stderr
    assert NEWEST_NAME in done.stderr
    assert "meterline migrate" in done.stderr
