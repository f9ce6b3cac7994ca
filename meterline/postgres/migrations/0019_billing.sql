-- Self-serve billing (issue 24).
-- A `billing` scope for the apps' backends: checkout, plan changes and payment methods of the
-- key's tenant without the catalog and key rights of `admin`.
ALTER TABLE api_keys DROP CONSTRAINT api_keys_scopes_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_scopes_check
    CHECK (scopes <@ ARRAY['ingest', 'read', 'admin', 'billing']::text[] AND cardinality(scopes) > 0);

-- Each completed Checkout Session is fulfilled once: its row is written in the same transaction
-- as what it gives (the grants of a credit pack), so a redelivered or reordered webhook finds it.
CREATE TABLE checkout_fulfilments (
    session_id   text PRIMARY KEY,
    tenant_id    bigint NOT NULL REFERENCES tenants (id),
    customer     text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('plan', 'credit_pack')),
    item         text NOT NULL,
    grant_ids    bigint[] NOT NULL DEFAULT '{}',
    fulfilled_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX checkout_fulfilments_customer ON checkout_fulfilments (tenant_id, customer);

-- Credit packs are synced to Stripe like plans: a product and a one-time price per pack.
ALTER TABLE stripe_objects DROP CONSTRAINT stripe_objects_kind_check;
ALTER TABLE stripe_objects ADD CONSTRAINT stripe_objects_kind_check
    CHECK (kind IN ('meter', 'product', 'price', 'metered_price', 'pack_product', 'pack_price'));
