"""Choosing containers: only when testcontainers is installed and the Docker engine answers."""

from __future__ import annotations

import socket
import sys
import threading
import types
from pathlib import Path

import pytest

from meterline_devstack.containers import docker_answers


def serve_once(path: Path, reply: bytes) -> threading.Thread:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)

    def answer() -> None:
        conn, _ = server.accept()
        conn.recv(1024)
        conn.sendall(reply)
        conn.close()
        server.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def with_testcontainers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "testcontainers", types.ModuleType("testcontainers"))


def test_an_engine_that_answers_ping(with_testcontainers: None, tmp_path: Path) -> None:
    sock = tmp_path / "docker.sock"
    serve_once(sock, b"HTTP/1.1 200 OK\r\n\r\nOK")
    assert docker_answers(f"unix://{sock}")


def test_an_engine_that_fails_or_is_absent(with_testcontainers: None, tmp_path: Path) -> None:
    sock = tmp_path / "docker.sock"
    serve_once(sock, b"HTTP/1.1 500 Internal Server Error\r\n\r\n")
    assert not docker_answers(f"unix://{sock}")
    assert not docker_answers(f"unix://{tmp_path / 'missing.sock'}")


def test_no_testcontainers_means_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "testcontainers", None)
    assert not docker_answers()
