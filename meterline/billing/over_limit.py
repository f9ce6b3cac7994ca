"""The catalog's `plan_changes.over_limit` policy, applied when a downgrade takes effect.

`block` (the default) needs nothing: the new plan's limits apply, and usage already past them
blocks new usage until the feature's next reset. `allow_until_reset` keeps access open until
then: for each blocking metered feature whose usage in the current period is already past the
new limit, the customer gets an unlimited `override` grant that expires at the period's end
(the feature's next reset). Grants are visible and voidable like any other; nothing is deleted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from meterline.catalog import Catalog, OverLimit
from meterline.entitlements import Decision, GrantRepository, NewGrant


class OverLimitPolicy:
    def __init__(
        self,
        catalog_of: Callable[[int], Catalog],
        decide: Callable[[int, str], list[Decision]],
        grants: GrantRepository,
        invalidate: Callable[[int, str], None],
    ) -> None:
        self._catalog_of = catalog_of
        self._decide = decide
        self._grants = grants
        self._invalidate = invalidate
        self._lock = threading.Lock()

    def plan_changed(self, tenant_id: int, customer: str, old: str, new: str) -> int:
        """Apply the policy to a change from plan `old` to `new`; the grants added. Several
        webhook events may report the same change: a feature that already has this change's
        grant gets no second one (checked under a lock)."""
        with self._lock:
            return self._apply(tenant_id, customer, old, new)

    def _apply(self, tenant_id: int, customer: str, old: str, new: str) -> int:
        catalog = self._catalog_of(tenant_id)
        before, after = catalog.plan(old), catalog.plan(new)
        if catalog.plan_changes.over_limit is not OverLimit.ALLOW_UNTIL_RESET:
            return 0
        if before is None or after is None or _amount(after) >= _amount(before):
            return 0
        self._invalidate(tenant_id, customer)
        note = f"over_limit allow_until_reset after the change {old} -> {new}"
        given = {
            (g.feature, g.expires_at)
            for g in self._grants.list(tenant_id, customer)
            if g.note == note
        }
        added = 0
        for d in self._decide(tenant_id, customer):
            if d.kind == "metered" and d.overage == "block" and not d.has_access and d.period:
                if (d.feature, d.period.end) in given:
                    continue
                grant = NewGrant(customer, d.feature, "override", None, None, d.period.end, note)
                self._grants.add(tenant_id, grant)
                added += 1
        if added:
            self._invalidate(tenant_id, customer)
        return added


def _amount(plan: object) -> int:
    price = getattr(plan, "price", None)
    return int(price.amount) if price is not None else 0
