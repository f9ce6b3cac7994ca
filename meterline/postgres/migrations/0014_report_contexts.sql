-- The billing context of each customer over time, frozen as the reporter first sees it: the
-- plan, Stripe customer and subscription, and the meters billed with their prices. A slot is
-- billed by the context in force at its start (`since` <= slot start), never by today's plan.
-- `since` is also a row of report_boundaries, so a change splits its hour into two slots.
CREATE TABLE report_contexts (
    tenant_id              bigint NOT NULL,
    customer               text NOT NULL,
    since                  timestamptz NOT NULL,
    plan                   text,                    -- null: nothing billed (canceled, ended)
    stripe_customer_id     text NOT NULL,
    stripe_subscription_id text,
    meters                 jsonb NOT NULL,          -- meter key -> its Stripe meter and price
    recorded_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, customer, since)
);

-- Where each tenant's reconciliation left off: days touched by events received or ledger rows
-- written since then are reconciled again.
CREATE TABLE report_reconcile_marks (
    tenant_id  bigint PRIMARY KEY,
    scanned_to timestamptz NOT NULL
);

-- Probes of Stripe's processing delay (reporter/lag.py): an hour whose summary must show
-- `expected`, sent at `sent_at`, first seen by a summary at `seen_at`.
CREATE TABLE report_lag_probes (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stripe_meter_id    text NOT NULL,
    stripe_customer_id text NOT NULL,
    hour               timestamptz NOT NULL,
    expected           numeric NOT NULL,
    sent_at            timestamptz NOT NULL,
    seen_at            timestamptz
);

ALTER TABLE reconciliation_alerts DROP CONSTRAINT reconciliation_alerts_kind_check;
ALTER TABLE reconciliation_alerts ADD CONSTRAINT reconciliation_alerts_kind_check
    CHECK (kind IN ('missing_in_stripe', 'extra_in_stripe', 'value_mismatch', 'not_reported',
                    'too_late_for_stripe', 'rejected_by_stripe', 'split_after_push',
                    'after_invoice_finalized', 'flush_blocked'));
