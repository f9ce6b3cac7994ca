-- Revenue events: each subscription state Stripe described (a customer.subscription.* webhook's
-- object, or a state rebuilt from Stripe by `meterline revenue rebuild`), kept once per Stripe
-- event id and tenant. MRR, its movements and retention are computed from these rows
-- (reporter/revenue.py). `items` is a list of {unit_amount, quantity, interval, interval_count}
-- (licensed prices only), `discount` {duration, percent_off, amount_off} or null.
CREATE TABLE revenue_events (
    tenant_id    bigint NOT NULL REFERENCES tenants (id),
    event_id     text NOT NULL,
    at           timestamptz NOT NULL,
    customer     text NOT NULL,
    subscription text NOT NULL,
    status       text NOT NULL,
    currency     text NOT NULL,
    items        jsonb NOT NULL,
    discount     jsonb,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    -- Arrival order: Stripe's `created` has whole seconds, so events of one second are read
    -- in the order they were kept (a rebuild keeps them in Stripe's own order).
    seq          bigserial NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX revenue_events_at ON revenue_events (tenant_id, at, seq);
