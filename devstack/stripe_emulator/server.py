"""Serving the emulator: `run` in the foreground, `EmulatorServer` in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn

from .app import create_app
from .config import EmulatorConfig
from .core import Emulator

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 12111


def run(config: EmulatorConfig, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve the emulator on `host:port` until interrupted (SIGINT/SIGTERM)."""
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning", access_log=False)


class EmulatorServer:
    """The emulator on a free loopback port in a daemon thread.

    Use as a context manager (or call `start`/`stop`). `url` is the base address to give the
    SDK for both `api` and `meter_events`; `emulator` is the live state, for in-process
    inspection. `start` blocks until the server accepts connections or raises RuntimeError.
    """

    def __init__(self, config: EmulatorConfig | None = None, host: str = DEFAULT_HOST) -> None:
        self.config = config or EmulatorConfig()
        self.host = host
        self.emulator = Emulator(self.config)
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (after `start`)."""
        if self._socket is None:
            raise RuntimeError("EmulatorServer is not started")
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> EmulatorServer:
        """Bind a free port, serve in a thread and wait until it is ready."""
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((self.host, 0))
        app = create_app(self.config, emulator=self.emulator)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.stop()
                raise RuntimeError("the Stripe emulator did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to exit, wait for the thread and release the port."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
