-- The reporter reads a tenant's minute rollups of its last slots (reporter/postgres/rollups.py
-- `_SLOTS`): the key leads with the customer, so without this index every read was a scan of
-- the whole table (tests/integration/test_plans.py). `bucket` is never updated, so the rollup
-- upserts stay HOT updates.
CREATE INDEX usage_rollups_minute_tenant_bucket ON usage_rollups_minute (tenant_id, bucket);
