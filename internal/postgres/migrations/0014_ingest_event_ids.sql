-- Idempotency past the stream's duplicate window (docs/contract.md §2
-- "Ingest", docs/architecture.md §4): the ids ingest appended, with the
-- stream sequence they got, kept for INGEST_IDEMPOTENCY_RETENTION
-- (default 24 h). Ingest writes them in bulk after the PubAck and looks a
-- request's ids up once per batch; the stream's own window covers the
-- moment between the two.
CREATE SCHEMA IF NOT EXISTS ingest;

CREATE TABLE ingest.event_ids (
    tenant      text COLLATE "C" NOT NULL, -- byte order: the cheapest comparisons
    id          text COLLATE "C" NOT NULL,
    seq         bigint      NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, id)
);

-- Rows arrive in recorded_at order: a BRIN index finds the old ones to
-- prune for a few kilobytes.
CREATE INDEX event_ids_recorded_at ON ingest.event_ids USING brin (recorded_at);

-- Only ingest (the owner) reads and writes it; tenants see nothing.
SELECT eventline.enable_tenant_rls('ingest.event_ids', 'SELECT');
