-- Server-side sessions of the /finance pages. The browser holds a random 256-bit session id;
-- only its SHA-256 is stored, so a read of this table cannot sign anyone in. A session acts
-- with the scopes its API key holds now: a revoked key ends its sessions at the next request.
CREATE TABLE finance_sessions (
    id_hash      bytea PRIMARY KEY CHECK (length(id_hash) = 32),
    tenant_id    bigint NOT NULL REFERENCES tenants (id),
    key_id       text NOT NULL REFERENCES api_keys (id),
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    ended_at     timestamptz,
    CHECK (expires_at > created_at)
);
CREATE INDEX finance_sessions_key ON finance_sessions (key_id);
CREATE INDEX finance_sessions_expires ON finance_sessions (expires_at);
