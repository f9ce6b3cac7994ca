-- Outbound webhooks (Standard Webhooks): endpoints with their secrets, a durable outbox of
-- messages, one delivery per (message, endpoint) and a log of every attempt.
-- A message is written in the transaction of the change it announces (`meterline.notify.outbox`)
-- and fanned out to the tenant's endpoints there; the dispatcher claims the oldest pending
-- delivery of each (endpoint, ordering key) with FOR UPDATE SKIP LOCKED and keeps the row lock
-- while it sends, so a killed sender's claim ends with its connection and nothing is lost.
CREATE TABLE webhook_endpoints (
    id               bigserial PRIMARY KEY,
    tenant_id        bigint NOT NULL REFERENCES tenants (id),
    url              text NOT NULL,
    description      text NOT NULL DEFAULT '',
    event_types      text[] NOT NULL DEFAULT '{}',   -- empty: every event type
    enabled          boolean NOT NULL DEFAULT true,
    disabled_reason  text,
    failure_streak   integer NOT NULL DEFAULT 0,     -- failed attempts in a row
    failing_since    timestamptz,                    -- first failure of the streak
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id);

-- Signing secrets (`whsec_` + base64): the newest signs, older ones keep signing until
-- `expires_at` (the rotation overlap). Kept in clear: HMAC needs the secret itself.
CREATE TABLE webhook_secrets (
    id           bigserial PRIMARY KEY,
    endpoint_id  bigint NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    secret       text NOT NULL CHECK (secret LIKE 'whsec\_%'),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz
);
CREATE INDEX webhook_secrets_endpoint ON webhook_secrets (endpoint_id);

-- One row per event: `msg_id` (the `webhook-id` header) derives from what the event is about,
-- so writing the same event twice keeps one message; `body` is the exact bytes every attempt
-- signs and sends.
CREATE TABLE webhook_messages (
    id            bigserial PRIMARY KEY,
    msg_id        text NOT NULL UNIQUE CHECK (msg_id NOT LIKE '%.%'),
    tenant_id     bigint NOT NULL REFERENCES tenants (id),
    event_type    text NOT NULL,
    ordering_key  text NOT NULL,                      -- the customer ('' when none)
    body          bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_messages_tenant ON webhook_messages (tenant_id, id);
CREATE INDEX webhook_messages_created ON webhook_messages (created_at);  -- retention

CREATE TABLE webhook_deliveries (
    id               bigserial PRIMARY KEY,
    message_id       bigint NOT NULL REFERENCES webhook_messages (id),
    endpoint_id      bigint NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    ordering_key     text NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,      -- attempts since created or replayed
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_status_code integer,
    last_error       text,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (message_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_head ON webhook_deliveries (endpoint_id, ordering_key, message_id)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id DESC);

CREATE TABLE webhook_attempts (
    id           bigserial PRIMARY KEY,
    delivery_id  bigint NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt      integer NOT NULL,
    started_at   timestamptz NOT NULL,
    latency_ms   double precision NOT NULL,
    status_code  integer,
    error        text,
    succeeded    boolean NOT NULL
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);
