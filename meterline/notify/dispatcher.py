"""The dispatcher: sends due deliveries, signs each attempt, settles it, retries on schedule.

`Dispatcher.deliver_one()` is one step, in one transaction: claim a due delivery
(`deliveries.claim`, row-locked), send it, log the attempt, schedule the retry or mark it done,
update the endpoint's failure streak (disabling it after a run of failures), commit. `start()`
runs `workers` threads of such steps until `stop()`; several processes may run dispatchers on
the same database (SKIP LOCKED keeps them apart). Each worker holds a connection of the pool it
is given for as long as a request lasts, so the pool is the dispatcher's own.

One attempt: POST the stored body with `content-type: application/json` and the three
`webhook-*` headers (a fresh `webhook-timestamp` each attempt, every live secret signing).
Any 2xx is success; anything else, a redirect (never followed), a timeout or a network error is
a failure; `Retry-After` stretches the next delay; `410 Gone` disables the endpoint. The
response body is never read.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from datetime import datetime
from email.utils import parsedate_to_datetime

import httpx

from meterline.clock import Clock, SystemClock
from meterline.notify import signing
from meterline.notify.metrics import WebhookMetrics
from meterline.notify.postgres.deliveries import Claimed, Outcome, claim, note_endpoint, settle
from meterline.notify.schedule import next_delay
from meterline.notify.settings import WebhookSettings
from meterline.notify.urls import RefusedAddress, check_resolved
from meterline.postgres import Pool

log = logging.getLogger("meterline.notify")
USER_AGENT = "Meterline-Webhooks/1"
MAX_ERROR = 500


class Dispatcher:
    def __init__(
        self,
        pool: Pool,
        settings: WebhookSettings,
        metrics: WebhookMetrics,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._metrics = metrics
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._http = httpx.Client(timeout=settings.timeout_s, follow_redirects=False)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def deliver_one(self) -> bool:
        """Send one due delivery; False when none was due."""
        with self._pool.connection() as conn, conn.transaction():
            job = claim(conn)
            if job is None:
                return False
            outcome = self._attempt(job)
            settle(conn, job, outcome)
            s = self._settings
            if note_endpoint(conn, job.endpoint_id, outcome.succeeded, outcome.gone,
                             s.disable_after_failures, s.disable_after_s):  # fmt: skip
                self._metrics.disabled.inc()
                log.warning("webhook endpoint %s disabled", job.endpoint_id)
        self._count(outcome)
        return True

    def drain(self, limit: int = 10_000) -> int:
        """Deliver until nothing is due (tests and one-shot runs); returns how many were sent."""
        sent = 0
        while sent < limit and self.deliver_one():
            sent += 1
        return sent

    def start(self) -> None:
        for n in range(self._settings.workers):
            t = threading.Thread(target=self._work, name=f"webhooks-{n}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the attempts in flight are settled."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout if timeout is not None else self._settings.timeout_s + 5)
        self._http.close()

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.deliver_one()
            except Exception:
                log.exception("webhook dispatch step failed")
                busy = False
            if not busy:
                self._stop.wait(self._settings.poll_s)

    def _attempt(self, job: Claimed) -> Outcome:
        started, t0 = self._clock.now(), time.perf_counter()
        try:
            check_resolved(job.url, self._settings.allow_private_urls)
            response = self._post(job)
        except (RefusedAddress, httpx.HTTPError, httpx.InvalidURL, UnicodeError, OSError) as exc:
            # recorded as a failed attempt: an exception escaping would roll the claim back
            # and the same delivery would be claimed again at once, with nothing logged
            error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR]
            return self._failed(job, started, t0, None, error, None)
        code = response.status_code
        if 200 <= code < 300:
            self._metrics.latency.observe(time.perf_counter() - t0)
            return Outcome(started, _ms(t0), True, code)
        after = _retry_after(response.headers.get("retry-after"))
        return self._failed(job, started, t0, code, f"HTTP {code}", after)

    def _post(self, job: Claimed) -> httpx.Response:
        stamp = int(self._clock.now().timestamp())
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            **signing.headers(job.secrets, job.msg_id, stamp, job.body),
        }
        with self._http.stream("POST", job.url, content=job.body, headers=headers) as response:
            return response

    def _failed(
        self, job: Claimed, started: datetime, t0: float, code: int | None, error: str,
        after: float | None,
    ) -> Outcome:  # fmt: skip
        s = self._settings
        retry = next_delay(job.attempts + 1, self._rng, s.retry_delays_s, s.retry_jitter, after)
        return Outcome(started, _ms(t0), False, code, error, retry, gone=code == 410)

    def _count(self, outcome: Outcome) -> None:
        if outcome.succeeded:
            kind = "succeeded"
        elif outcome.error and outcome.error.startswith("RefusedAddress"):
            kind = "refused"
        else:
            kind = "failed" if outcome.retry_in is not None else "exhausted"
        self._metrics.attempts.labels(kind).inc()


_GAUGES = """
SELECT (SELECT count(*) FROM webhook_endpoints WHERE NOT enabled AND disabled_reason IS NOT NULL),
       (SELECT extract(epoch FROM now() - min(d.next_attempt_at)) FROM webhook_deliveries d
        JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.enabled
        WHERE d.status = 'pending' AND d.next_attempt_at <= now())
"""


def observe(pool: Pool, metrics: WebhookMetrics) -> None:
    """Refresh the gauges read from Postgres (the serving process calls it at each scrape)."""
    with pool.connection() as conn:
        row = conn.execute(_GAUGES).fetchone()
    assert row is not None
    metrics.disabled_now.set(row[0])
    metrics.oldest_due.set(float(row[1] or 0))


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def _retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date); None if absent."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
