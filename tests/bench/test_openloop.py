"""The open-loop generator against a tiny HTTP server: the schedule is kept whatever the server
does, a stall counts against every request due during it, and unanswered requests are counted."""

from __future__ import annotations

import gc
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from bench.loadgen import encode_request
from bench.openloop import offer

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"


@contextmanager
def server(stall_at: int | None = None, stall_s: float = 0.0, answer: bool = True) -> Iterator[int]:
    """A keep-alive server; the `stall_at`-th request it reads (0-based, over all connections)
    is answered `stall_s` late, and nothing is answered when `answer` is false."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen = iter(range(1_000_000))
    lock = threading.Lock()

    def handle(conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                _, buffer = buffer.split(b"\r\n\r\n", 1)
                with lock:
                    n = next(seen)
                if n == stall_at:
                    time.sleep(stall_s)
                if answer:
                    conn.sendall(OK)

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


REQUEST = [encode_request("GET", "/x")]


def test_every_request_is_sent_on_schedule_and_answered() -> None:
    with server() as port:
        result = offer("127.0.0.1", port, REQUEST, rate=500, seconds=0.5, connections=4)
    assert result.finished == 250 and result.unfinished == 0
    assert result.statuses == {200: 250} and not result.errors
    assert result.elapsed >= 0.49  # the last request is due 0.498 s after the start


def test_a_stall_counts_against_every_request_due_on_that_connection_meanwhile() -> None:
    with server(stall_at=10, stall_s=0.3) as port:
        result = offer("127.0.0.1", port, REQUEST, rate=400, seconds=1.0, connections=2)
    assert result.finished == 400
    late = [x for x in result.latencies if x >= 0.1]
    # one connection waits 0.3 s: about 60 of its requests (every other one due meanwhile) are
    # late, not just the stalled one, which a closed loop would report alone
    assert len(late) >= 30
    assert result.percentile(1.0) >= 0.29
    assert result.send_lag(1.0) >= 0.2


def test_unanswered_requests_are_counted_with_their_wait() -> None:
    with server(answer=False) as port:
        result = offer("127.0.0.1", port, REQUEST, rate=100, seconds=0.2, connections=2, drain=0.3)
    assert result.finished == 2  # one sent per connection, never answered
    assert result.unfinished == 20 and len(result.latencies) == 20
    assert min(result.latencies) >= 0.1  # the last was due 0.19 s in, the deadline ~0.49 s


def test_by_second_shows_when_the_slow_requests_were_due() -> None:
    with server(stall_at=300, stall_s=0.3) as port:
        result = offer("127.0.0.1", port, REQUEST, rate=200, seconds=2.0, connections=2)
    seconds = result.by_second(1.0)
    assert [(s, n) for s, n, _ in seconds] == [(0, 200), (1, 200)]
    assert seconds[1][2] >= 0.29  # the stall, in the second its request was due
    assert seconds[0][2] < seconds[1][2]


def test_the_collector_is_paused_only_while_the_run_lasts() -> None:
    during: list[bool] = []
    done = threading.Event()

    def sample() -> None:  # the collector's switch is process-wide: seen from any thread
        time.sleep(0.2)  # into the offered span (0.5 s)
        during.append(gc.isenabled())
        done.set()

    with server() as port:
        threading.Thread(target=sample, daemon=True).start()
        result = offer("127.0.0.1", port, REQUEST, rate=500, seconds=0.5, connections=2)
    assert done.wait(5) and during == [False]
    assert result.finished == 250 and gc.isenabled()
