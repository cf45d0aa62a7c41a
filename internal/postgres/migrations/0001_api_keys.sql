-- API keys: one tenant each, scopes, stored hashed. The key a client sends is
-- "el_<id>_<secret>"; only SHA-256(secret) is kept.
CREATE SCHEMA IF NOT EXISTS auth;

CREATE TABLE auth.api_keys (
    id          text PRIMARY KEY CHECK (id ~ '^[a-z0-9]{16}$'),
    tenant      text NOT NULL CHECK (tenant ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    secret_hash bytea NOT NULL CHECK (length(secret_hash) = 32),
    scopes      text[] NOT NULL CHECK (scopes <@ ARRAY['ingest', 'read', 'admin']::text[] AND cardinality(scopes) > 0),
    rate_limit  integer CHECK (rate_limit > 0),
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE INDEX api_keys_tenant_idx ON auth.api_keys (tenant, created_at);
