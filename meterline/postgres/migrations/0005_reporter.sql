-- Reporter: the Stripe report ledger, known billing-period boundaries, reconciliation runs,
-- their alerts, and the repairs finance chose. See reporter/README.md.

-- One row per meter event we send (or meant to send) to Stripe. A row is written with status
-- 'pending' BEFORE the Stripe call and set to 'sent' after Stripe answered; a crash in between
-- leaves 'pending', and the next run resends the same identifier (Stripe's identifier dedupe
-- makes the resend harmless). `slot_start` is the start of the hourly pre-aggregate (an hour, or
-- the part of an hour after a billing-period boundary); `value` is what this revision adds
-- (the difference for sum meters, the whole value for last-value meters).
CREATE TABLE report_ledger (
    tenant_id      bigint NOT NULL,
    customer       text NOT NULL,
    meter          text NOT NULL,
    slot_start     timestamptz NOT NULL,
    revision       integer NOT NULL CHECK (revision > 0),
    identifier     text NOT NULL UNIQUE CHECK (length(identifier) <= 100),
    event_name     text NOT NULL,
    stripe_customer_id text NOT NULL,
    value          numeric NOT NULL,
    total          numeric NOT NULL,              -- what Stripe holds for the slot after this row
    status         text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'sent', 'rejected', 'canceled')),
    error          text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    sent_at        timestamptz,
    PRIMARY KEY (tenant_id, customer, meter, slot_start, revision)
);
CREATE INDEX report_ledger_pending ON report_ledger (status) WHERE status = 'pending';
CREATE INDEX report_ledger_slot ON report_ledger (tenant_id, slot_start);

-- Billing-period boundaries seen on subscriptions, rounded up to the minute. An hour that holds
-- a boundary is reported as two slots so each part lands in its own invoice.
CREATE TABLE report_boundaries (
    tenant_id  bigint NOT NULL,
    customer   text NOT NULL,
    at         timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, customer, at)
);

-- Push runs and reconciliation runs, for the finance page's history and /metrics.
CREATE TABLE reconciliation_runs (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id      bigint NOT NULL REFERENCES tenants (id),
    window_start   timestamptz NOT NULL,
    window_end     timestamptz NOT NULL,
    trigger        text NOT NULL CHECK (trigger IN ('scheduled', 'manual')),
    status         text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'ok', 'alerts', 'failed')),
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    hours_checked  integer NOT NULL DEFAULT 0,
    our_units      numeric NOT NULL DEFAULT 0,
    stripe_units   numeric NOT NULL DEFAULT 0,
    alerts         integer NOT NULL DEFAULT 0,
    error          text
);
CREATE INDEX reconciliation_runs_tenant ON reconciliation_runs (tenant_id, started_at DESC);

-- One discrepancy (or one usage Stripe can no longer accept). Finance moves `status` from
-- open to acknowledged to resolved, with a note. `money_minor` is |difference| at the metered
-- price, in the currency's minor units (cents), as Stripe's unit_amount_decimal.
CREATE TABLE reconciliation_alerts (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id      bigint NOT NULL REFERENCES tenants (id),
    run_id         bigint REFERENCES reconciliation_runs (id),
    kind           text NOT NULL CHECK (kind IN ('missing_in_stripe', 'extra_in_stripe',
                       'value_mismatch', 'not_reported', 'too_late_for_stripe', 'rejected_by_stripe')),
    customer       text NOT NULL,
    meter          text NOT NULL,
    window_start   timestamptz NOT NULL,
    window_end     timestamptz NOT NULL,
    our_units      numeric NOT NULL,
    sent_units     numeric NOT NULL,
    stripe_units   numeric,
    difference     numeric NOT NULL,
    unit_amount_decimal numeric,
    currency       text,
    money_minor    numeric,
    status         text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
    note           text,
    detail         text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reconciliation_alerts_status ON reconciliation_alerts (tenant_id, status, created_at DESC);
CREATE UNIQUE INDEX reconciliation_alerts_live
    ON reconciliation_alerts (tenant_id, kind, customer, meter, window_start)
    WHERE status <> 'resolved';

-- Every repair a person asked for, and what happened. Repairs are never automatic.
CREATE TABLE reconciliation_repairs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id     bigint NOT NULL REFERENCES reconciliation_alerts (id),
    action       text NOT NULL CHECK (action IN ('resend', 'cancel', 'push')),
    identifiers  text[] NOT NULL DEFAULT '{}',
    outcome      text NOT NULL,
    actor        text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reconciliation_repairs_alert ON reconciliation_repairs (alert_id);
