-- Metered revenue: the metered part of each closed Stripe invoice (invoice.finalized, .paid,
-- .voided, .marked_uncollectible webhooks, or `meterline revenue rebuild`), one row per
-- invoice, shown beside MRR and never inside it (reporter/revenue.py). `amount` is the sum of
-- the invoice's metered lines less their discounts, in minor units of `currency`; `at` is
-- when the invoice was finalized. `status` only moves forward (open -> uncollectible -> paid,
-- or void): a late delivery of an earlier state keeps the later one (meterline/revenue/invoices.py).
CREATE TABLE revenue_invoices (
    tenant_id   bigint NOT NULL REFERENCES tenants (id),
    invoice     text NOT NULL,
    at          timestamptz NOT NULL,
    customer    text NOT NULL,
    currency    text NOT NULL,
    amount      bigint NOT NULL,
    status      text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, invoice)
);
CREATE INDEX revenue_invoices_at ON revenue_invoices (tenant_id, at);
