-- Foundation: tenants, API keys, catalog versions, the event ledger, minute rollups, consumer offsets.

CREATE TABLE tenants (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Only the SHA-256 of a key's secret is stored; the key itself is shown once at creation.
CREATE TABLE api_keys (
    id          text PRIMARY KEY,
    tenant_id   bigint NOT NULL REFERENCES tenants (id),
    secret_hash bytea NOT NULL UNIQUE,
    scopes      text[] NOT NULL CHECK (scopes <@ ARRAY['ingest', 'read', 'admin']::text[] AND cardinality(scopes) > 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

-- Each `catalog apply` that changes something stores the whole validated catalog as a new version.
CREATE TABLE catalog_versions (
    tenant_id   bigint NOT NULL REFERENCES tenants (id),
    version     integer NOT NULL CHECK (version > 0),
    document    jsonb NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, version)
);

-- The event ledger: one row per counted event, the final word on duplicates.
-- Partitioned by the UTC day of the event time; an event's identity is (tenant, id, day):
-- see meterline/postgres/README.md for why the day is part of the key.
CREATE TABLE usage_events (
    tenant_id   bigint NOT NULL,
    event_id    text NOT NULL,
    day         date NOT NULL,
    customer    text NOT NULL,
    meter       text NOT NULL,
    ts          timestamptz NOT NULL,
    value       numeric NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, event_id, day)
) PARTITION BY RANGE (day);
CREATE INDEX usage_events_customer ON usage_events (tenant_id, customer, meter, ts);

-- Minute rollups per (tenant, customer, meter). `value` is aggregated with the meter's
-- aggregation (sum, count, max, latest); `latest_ts` orders values for `latest`.
CREATE TABLE usage_rollups_minute (
    tenant_id   bigint NOT NULL,
    customer    text NOT NULL,
    meter       text NOT NULL,
    bucket      timestamptz NOT NULL,
    value       numeric NOT NULL,
    count       bigint NOT NULL,
    latest_ts   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, customer, meter, bucket)
) WITH (fillfactor = 70);

-- The next offset to read per partition, written in the same transaction as the rows it covers.
CREATE TABLE consumer_offsets (
    consumer_group text NOT NULL,
    topic          text NOT NULL,
    partition      integer NOT NULL,
    next_offset    bigint NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);
