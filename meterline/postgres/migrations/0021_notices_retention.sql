-- Retention finds entitlement notices past their period by `period_start` (retention.py).
CREATE INDEX entitlement_notices_period ON entitlement_notices (period_start);
