-- Entitlements: the first answer of each consume request, so the same event_id gets it again.
CREATE TABLE entitlement_answers (
    tenant_id   bigint NOT NULL REFERENCES tenants (id),
    event_id    text NOT NULL,
    status      smallint NOT NULL,
    body        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX entitlement_answers_created ON entitlement_answers (created_at);

-- Look up a customer's Stripe subscription row by the Stripe id (webhooks).
CREATE INDEX IF NOT EXISTS stripe_objects_stripe_id ON stripe_objects (stripe_id);
