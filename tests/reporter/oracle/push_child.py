"""One reporter push in a process of its own, at a given (emulator) time, that SIGKILLs itself
right after a Stripe answer with the given probability (before the ledger records it).

`python -m tests.reporter.oracle.push_child CONNINFO STRIPE_URL API_KEY NOW_MS SEED PROBABILITY`;
exit status -9 when it killed itself, 0 when the push finished.
"""

from __future__ import annotations

import random
import sys

import stripe

from meterline.clock import FakeClock
from meterline.postgres import open_pool
from meterline.stripe.meter_events import StripeMeterEventSender
from meterline.stripe.sending import RetryingSender
from meterline.stripe.summaries import StripeSummaryReader
from reporter.faults import CrashingSender
from reporter.metrics import ReporterMetrics
from reporter.notify import MemoryNotifier
from reporter.service import Reporter
from tests.reporter.support import settings_for


def main(conninfo: str, url: str, key: str, now_ms: str, seed: str, probability: str) -> None:
    client = stripe.StripeClient(key, base_addresses={"api": url, "meter_events": url})
    settings = settings_for()
    metrics = ReporterMetrics()
    inner = StripeMeterEventSender(client, settings.stream_threshold)
    retrying = RetryingSender(
        inner, settings.retry_max_attempts, settings.retry_base_s, settings.retry_max_s
    )
    sender = CrashingSender(retrying, float(probability), random.Random(int(seed)))
    pool = open_pool(conninfo, max_size=2)
    reporter = Reporter(
        pool=pool, settings=settings, clock=FakeClock(int(now_ms)), sender=sender,
        summaries=StripeSummaryReader(client), metrics=metrics, notifier=MemoryNotifier(),
    )  # fmt: skip
    print(reporter.push().status)
    pool.close()


if __name__ == "__main__":
    main(*sys.argv[1:7])
