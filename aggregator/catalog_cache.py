"""Meter aggregations from the tenants' catalogs, cached for a few seconds per tenant.

A meter missing from the catalog (removed after its events were produced) is still counted,
as `sum`, and logged once: usage is never dropped because the catalog changed.
"""

from __future__ import annotations

import logging
import threading
import time

from meterline.catalog.model import Aggregation
from meterline.catalog.repository import CatalogRepository

log = logging.getLogger(__name__)


class AggregationCache:
    def __init__(self, catalogs: CatalogRepository, ttl_s: float = 30.0) -> None:
        self._catalogs = catalogs
        self._ttl = ttl_s
        self._tenants: dict[int, tuple[float, dict[str, Aggregation]]] = {}
        self._warned: set[tuple[int, str]] = set()
        self._lock = threading.Lock()

    def __call__(self, tenant_id: int, meter: str) -> Aggregation:
        found = self._meters(tenant_id).get(meter)
        if found is not None:
            return found
        if (tenant_id, meter) not in self._warned:
            self._warned.add((tenant_id, meter))
            log.warning(
                "meter not in the catalog: counted as sum",
                extra={"tenant_id": tenant_id, "meter": meter},
            )
        return Aggregation.SUM

    def _meters(self, tenant_id: int) -> dict[str, Aggregation]:
        now = time.monotonic()
        with self._lock:
            cached = self._tenants.get(tenant_id)
            if cached is not None and now - cached[0] < self._ttl:
                return cached[1]
        current = self._catalogs.current(tenant_id)
        meters = {} if current is None else {m.key: m.aggregation for m in current[1].meters}
        with self._lock:
            self._tenants[tenant_id] = (now, meters)
        return meters
