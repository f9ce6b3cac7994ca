"""Reading what Stripe counted: meter event summaries per customer and hour.

`SummaryReader.hourly(meter_id, stripe_customer_id, start, end)` answers Stripe's aggregated
value for each hour in [start, end) (both hour-aligned, Unix seconds) from
`GET /v1/billing/meters/{id}/event_summaries?value_grouping_window=hour`. Hours Stripe leaves
out (empty windows) are absent from the answer: callers treat a missing hour as 0.

Stripe processes meter events asynchronously, so summaries of recent hours may lag: callers
compare only hours that ended at least the processing lag ago.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from decimal import Decimal

import stripe

from meterline.stripe.meter_events import PermanentStripeError, TransientStripeError
from meterline.stripe.ratelimit import RateLimiter, Unlimited

HOUR = 3600


class SummaryReader(abc.ABC):
    @abc.abstractmethod
    def hourly(
        self, meter_id: str, stripe_customer_id: str, start: int, end: int
    ) -> dict[int, Decimal]:
        """Stripe's value per hour start (Unix seconds) in [start, end); empty hours omitted.

        Raises TransientStripeError when Stripe cannot answer now, PermanentStripeError for an
        unknown meter or misaligned window.
        """

    @abc.abstractmethod
    def finalized(self, stripe_customer_id: str) -> list[tuple[int, int, int]]:
        """The customer's finalized invoices as (period start, period end, finalized at), Unix
        seconds. Raises as `hourly`."""


class StripeSummaryReader(SummaryReader):
    """Reads summaries through the SDK (auto-paginating); `on_request` observes latency."""

    def __init__(
        self,
        client: stripe.StripeClient,
        limiter: RateLimiter | None = None,
        on_request: Callable[[str, float], None] | None = None,
    ) -> None:
        self._client = client
        self._limiter = limiter or Unlimited()
        self._on_request = on_request or (lambda kind, seconds: None)

    def hourly(
        self, meter_id: str, stripe_customer_id: str, start: int, end: int
    ) -> dict[int, Decimal]:
        params = {
            "customer": stripe_customer_id,
            "start_time": start,
            "end_time": end,
            "value_grouping_window": "hour",
            "limit": 100,
        }
        self._limiter.acquire()
        began = time.perf_counter()
        try:
            page = self._client.v1.billing.meters.event_summaries.list(meter_id, params)  # type: ignore[arg-type]
            out = {
                int(s.start_time): Decimal(str(s.aggregated_value)) for s in page.auto_paging_iter()
            }
        except stripe.InvalidRequestError as exc:
            raise PermanentStripeError(
                f"event summaries of {meter_id}: {exc.user_message}"
            ) from None
        except stripe.StripeError as exc:
            raise TransientStripeError(f"event summaries of {meter_id}: {exc}") from None
        finally:
            self._on_request("event_summaries", time.perf_counter() - began)
        return out

    def finalized(self, stripe_customer_id: str) -> list[tuple[int, int, int]]:
        self._limiter.acquire()
        began = time.perf_counter()
        try:
            page = self._client.v1.invoices.list({"customer": stripe_customer_id, "limit": 100})
            return [
                (int(i.period_start), int(i.period_end), int(i.status_transitions.finalized_at))
                for i in page.auto_paging_iter()
                if i.status_transitions and i.status_transitions.finalized_at
            ]
        except stripe.InvalidRequestError as exc:
            raise PermanentStripeError(f"invoices of {stripe_customer_id}: {exc}") from None
        except stripe.StripeError as exc:
            raise TransientStripeError(f"invoices of {stripe_customer_id}: {exc}") from None
        finally:
            self._on_request("invoices", time.perf_counter() - began)
