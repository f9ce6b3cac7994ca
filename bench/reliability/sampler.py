"""`Sampler`: work repeated on a daemon thread for as long as a `with` block runs."""

from __future__ import annotations

import threading
from typing import Self


class Sampler:
    """Calls `sample()` every `every_s` seconds on a daemon thread, from entering the block until
    leaving it; leaving waits up to `join_s` for a sample in progress."""

    def __init__(self, every_s: float, join_s: float = 2.0) -> None:
        self._every_s, self._join_s = every_s, join_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(self._join_s)

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            self.sample()
