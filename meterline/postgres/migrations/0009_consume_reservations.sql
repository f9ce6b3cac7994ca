-- Consume: the answer row is claimed before the reservation is made, and holds the granted
-- event itself, so that (1) pending reservations are rebuilt from Postgres after a Redis loss
-- (granted answers whose events the ledger does not hold yet), (2) a retry republishes exactly
-- the first event (same amount, same timestamp) when a publish's fate was unknown, and (3)
-- concurrent consumes of one event_id wait for the first one's answer.
-- A claimed row has no status yet; `claimed_at` is its lease (a crashed holder's claim is
-- taken over after it lapses).
ALTER TABLE entitlement_answers
    ALTER COLUMN status DROP NOT NULL,
    ALTER COLUMN body DROP NOT NULL,
    ADD COLUMN customer   text,
    ADD COLUMN meter      text,
    ADD COLUMN amount     float8,
    ADD COLUMN event_ms   bigint,
    ADD COLUMN claimed_at timestamptz,
    ADD COLUMN published  boolean NOT NULL DEFAULT true;

-- Granted answers whose events the ledger does not hold yet are the pending reservations:
-- read per (customer, meter, period) while the Redis view is not ready, and all of them by a
-- rebuild.
CREATE INDEX entitlement_answers_granted ON entitlement_answers (tenant_id, customer, meter, event_ms)
    WHERE status = 200 AND event_ms IS NOT NULL;
