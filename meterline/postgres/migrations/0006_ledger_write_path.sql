-- The ledger's write path: every counted event inserts one row, so each index on
-- usage_events is paid on the aggregator's hot path. The b-tree on (tenant, customer, meter, ts)
-- cost about as much as the primary key itself; it served only the finance drill-down (at most
-- 200 events of one customer-hour) and the reporter's late-event scan. Rows arrive in roughly
-- event-time and receive-time order, so block-range (BRIN) indexes find those hours for a
-- fraction of the write cost. See meterline/postgres/README.md.
DROP INDEX usage_events_customer;
CREATE INDEX usage_events_ts ON usage_events USING brin (ts) WITH (autosummarize = on);
CREATE INDEX usage_events_received_at ON usage_events USING brin (received_at)
    WITH (autosummarize = on);
