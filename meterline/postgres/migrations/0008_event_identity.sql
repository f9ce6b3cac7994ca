-- One identity per (tenant, event id), whatever the event's time. The ledger's key held the UTC
-- day of the event, so a retry stamped after midnight (a server-stamped time) was a new row and
-- counted twice. `usage_event_ids` is now the final word on duplicates: one row per counted
-- identity, with the day of the ledger row that counted it (its partition). The aggregator
-- inserts a batch's ids first and writes ledger rows for the new ones only, so the ledger's own
-- key is redundant and dropped: the hot path still pays one unique b-tree per event.
-- Ids leave with their ledger partition (`drop_partitions_before`). See
-- meterline/postgres/README.md. Run with the aggregators stopped: a previous release's
-- aggregator would write ledger rows without their ids.
CREATE TABLE usage_event_ids (
    tenant_id bigint NOT NULL,
    event_id  text NOT NULL,
    day       date NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
);

-- Existing rows. An identity already counted on two days keeps the later one, so that its id
-- stays until its last ledger row leaves the window.
INSERT INTO usage_event_ids (tenant_id, event_id, day)
SELECT DISTINCT ON (tenant_id, event_id) tenant_id, event_id, day
FROM usage_events
ORDER BY tenant_id, event_id, day DESC;

ALTER TABLE usage_events DROP CONSTRAINT usage_events_pkey;
