-- Dunning (issue 24): one sequence per failed invoice, its steps each taken once.
-- The webhook handler (entitlements) and the timed job (reporter) change a sequence under a
-- transaction-level advisory lock on (tenant, invoice) and publish its notifications to the
-- outbox in the same transaction. `steps` maps each step taken to when; `next_step_at` is when
-- the job has the next timed step due (NULL: nothing timed is left).
CREATE TABLE dunning_sequences (
    tenant_id            bigint NOT NULL REFERENCES tenants (id),
    invoice_id           text NOT NULL,
    customer             text NOT NULL,
    subscription_id      text,
    plan                 text,
    started_at           timestamptz NOT NULL,
    attempt_count        integer NOT NULL,
    next_payment_attempt timestamptz,
    update_url           text,
    amount_due           bigint NOT NULL,
    currency             text NOT NULL,
    steps                jsonb NOT NULL DEFAULT '{}',
    downgraded_to        text,
    ended                text CHECK (ended IN ('paid', 'void', 'uncollectible')),
    ended_at             timestamptz,
    next_step_at         timestamptz,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, invoice_id)
);
CREATE INDEX dunning_sequences_due ON dunning_sequences (next_step_at)
    WHERE next_step_at IS NOT NULL;
CREATE INDEX dunning_sequences_customer ON dunning_sequences (tenant_id, customer, started_at);
CREATE INDEX dunning_sequences_open ON dunning_sequences (subscription_id) WHERE ended IS NULL;
CREATE INDEX dunning_sequences_open_invoice ON dunning_sequences (invoice_id) WHERE ended IS NULL;
