"""Meter aggregations from the tenants' catalogs, cached for a few seconds per tenant.

A meter missing from the catalog (removed after its events were produced) is still counted,
as `sum`, and logged once: usage is never dropped because the catalog changed.
"""

from __future__ import annotations

import logging
import threading

from meterline.catalog.model import Aggregation
from meterline.catalog.repository import CatalogRepository
from meterline.ttlmap import TtlMap

log = logging.getLogger(__name__)


class AggregationCache:
    def __init__(self, catalogs: CatalogRepository, ttl_s: float = 30.0) -> None:
        self._catalogs = catalogs
        self._tenants: TtlMap[int, dict[str, Aggregation]] = TtlMap(ttl_s)
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
        cached = self._tenants.get(tenant_id)
        if cached is not None:
            return cached
        current = self._catalogs.current(tenant_id)
        meters = {} if current is None else {m.key: m.aggregation for m in current[1].meters}
        with self._lock:
            self._tenants.put(tenant_id, meters)
        return meters
