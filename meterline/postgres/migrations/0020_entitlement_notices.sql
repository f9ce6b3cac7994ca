-- Entitlement notices: one row per (customer, feature, period, notice) announced, where a
-- notice is `threshold:<percent>` or `limit_exceeded`. The primary key decides which of several
-- racing consumes announces it: each inserts with ON CONFLICT DO NOTHING in the transaction that
-- writes the outbox message (`meterline.notify.outbox`), and only the one that inserted writes
-- it. Rows are a few per customer-feature and period; they are kept as the record of what
-- was announced.
CREATE TABLE entitlement_notices (
    tenant_id    bigint NOT NULL REFERENCES tenants (id),
    customer     text NOT NULL,
    feature      text NOT NULL,
    period_start timestamptz NOT NULL,
    notice       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, customer, feature, period_start, notice)
);
