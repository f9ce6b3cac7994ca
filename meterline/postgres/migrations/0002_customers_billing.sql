-- Customers, their plans and subscriptions, grants, the catalog's Stripe objects, webhook ids.
-- One Stripe account serves a Meterline deployment; a Stripe customer belongs to one tenant.

CREATE TABLE customers (
    tenant_id          bigint NOT NULL REFERENCES tenants (id),
    id                 text NOT NULL,               -- the tenant's own customer id
    stripe_customer_id text UNIQUE,                 -- set when first needed
    name               text,
    email              text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

-- The customer's current plan. Rows come from Stripe subscriptions (source 'stripe', kept in
-- step by webhooks) or are set by hand (source 'manual', or 'lifetime' with no period end).
-- A customer with no row is on the catalog's default plan.
CREATE TABLE subscriptions (
    tenant_id              bigint NOT NULL,
    customer               text NOT NULL,
    source                 text NOT NULL CHECK (source IN ('stripe', 'manual', 'lifetime')),
    plan                   text NOT NULL,
    status                 text NOT NULL CHECK (status IN ('incomplete', 'incomplete_expired',
                               'trialing', 'active', 'past_due', 'canceled', 'unpaid', 'paused')),
    stripe_subscription_id text UNIQUE,
    current_period_start   timestamptz,
    current_period_end     timestamptz,
    past_due_since         timestamptz,             -- when payment first failed (grace starts)
    cancel_at_period_end   boolean NOT NULL DEFAULT false,
    stripe_event_created   bigint,                  -- `created` of the newest event applied
    updated_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, customer),
    FOREIGN KEY (tenant_id, customer) REFERENCES customers (tenant_id, id)
);

-- Credits, top-ups and enterprise overrides of one feature for one customer.
CREATE TABLE grants (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    bigint NOT NULL,
    customer     text NOT NULL,
    feature      text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('credit', 'top_up', 'override')),
    amount       numeric CHECK (amount IS NULL OR amount >= 0),  -- NULL with 'override' = unlimited
    effective_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    note         text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    voided_at    timestamptz,
    FOREIGN KEY (tenant_id, customer) REFERENCES customers (tenant_id, id)
);
CREATE INDEX grants_customer ON grants (tenant_id, customer, feature);

-- The Stripe object behind each catalog entry (kind: meter, product, price, metered_price).
CREATE TABLE stripe_objects (
    tenant_id  bigint NOT NULL REFERENCES tenants (id),
    kind       text NOT NULL CHECK (kind IN ('meter', 'product', 'price', 'metered_price')),
    key        text NOT NULL,                       -- meter key, plan key, or plan/meter
    stripe_id  text NOT NULL,
    event_name text,                                -- for meters: the Stripe event_name
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, kind, key)
);

-- Each Stripe webhook event id is stored once; a redelivery finds its row and does nothing.
CREATE TABLE stripe_webhook_events (
    event_id     text PRIMARY KEY,
    type         text NOT NULL,
    created      bigint NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz
);
