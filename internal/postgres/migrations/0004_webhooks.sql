-- Webhooks: endpoints per tenant, one delivery per (event, endpoint), and
-- every attempt of every delivery.
CREATE SCHEMA IF NOT EXISTS webhook;

-- change_seq grows on every insert or update, so replicas refresh their
-- endpoint cache by asking for rows changed since the last one they saw.
CREATE SEQUENCE webhook.endpoint_changes;

CREATE TABLE webhook.endpoints (
    tenant               text NOT NULL,
    id                   text NOT NULL,
    url                  text NOT NULL,
    events               text[] NOT NULL,
    parents              jsonb,              -- null: any; else [{type,id}], matching any
    format               text NOT NULL DEFAULT 'json' CHECK (format IN ('json', 'slack')),
    description          text NOT NULL DEFAULT '',
    rate_limit           integer CHECK (rate_limit > 0),   -- deliveries per second; null: default
    retry_schedule       integer[],                         -- seconds; null: default
    secrets              jsonb NOT NULL,     -- [{"secret": "whsec_...", "expires_at": null | time}], newest first
    enabled              boolean NOT NULL DEFAULT true,
    disabled_reason      text,
    consecutive_failures integer NOT NULL DEFAULT 0,
    failing_since        timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    deleted_at           timestamptz,
    change_seq           bigint NOT NULL DEFAULT nextval('webhook.endpoint_changes'),
    PRIMARY KEY (tenant, id)
);
CREATE UNIQUE INDEX endpoints_id_idx ON webhook.endpoints (id);
CREATE INDEX endpoints_change_idx ON webhook.endpoints (change_seq);

CREATE TABLE webhook.deliveries (
    id              text PRIMARY KEY,
    tenant          text NOT NULL,
    endpoint_id     text NOT NULL,
    event_id        text NOT NULL,
    event_seq       bigint NOT NULL,
    event_type      text NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,            -- pending: when it is due (or its claim expires)
    last_attempt_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX deliveries_due_idx ON webhook.deliveries (next_attempt_at) WHERE status = 'pending';
-- Delivery ids are UUIDv7, so id order is creation order: the log is listed
-- and pruned by id, and no index on created_at is needed.
CREATE INDEX deliveries_endpoint_idx ON webhook.deliveries (tenant, endpoint_id, id);

CREATE TABLE webhook.attempts (
    delivery_id  text NOT NULL,
    n            integer NOT NULL,
    tenant       text NOT NULL,
    endpoint_id  text NOT NULL,
    at           timestamptz NOT NULL,
    duration_ms  integer NOT NULL,
    status_code  integer,
    error_class  text,                      -- dns, blocked, timeout, refused, tls, status, reset, network
    error        text,
    response     text,                      -- at most 1 KiB of the response body
    PRIMARY KEY (delivery_id, n)
);
