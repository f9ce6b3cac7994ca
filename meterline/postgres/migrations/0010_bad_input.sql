-- Verified Stripe webhooks that could not be applied (malformed, or a subscription breaking a
-- rule), kept for inspection: one row per distinct body, counting redeliveries.
CREATE TABLE stripe_webhook_rejects (
    body_sha256 bytea PRIMARY KEY,
    event_id    text,
    size        integer NOT NULL,
    body        bytea NOT NULL,
    reason      text NOT NULL,
    attempts    integer NOT NULL DEFAULT 1,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now()
);

-- A subscription's period ends after it starts (the admin API and the Stripe sync refuse any
-- other). NOT VALID: rows written before this rule are left for an operator to find with
-- `WHERE current_period_end <= current_period_start`; every new write is checked.
ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_period_order
    CHECK (current_period_end > current_period_start) NOT VALID;
