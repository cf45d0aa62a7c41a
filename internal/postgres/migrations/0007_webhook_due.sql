-- Webhooker performance: the status update after an attempt becomes a HOT
-- update (no index touched), and due state moves out of webhook.deliveries.
--
-- In 0004 the scheduler found due deliveries through a partial index on
-- deliveries (next_attempt_at) WHERE status = 'pending'. Because that index
-- names status and next_attempt_at, every outcome update (status, attempts,
-- next_attempt_at, last_attempt_at) wrote a new entry into all four indexes
-- of the table. Now:
--   * webhook.due holds the deliveries waiting for a retry, a manual retry or
--     a replay (one small row each, deleted when the attempt is made and
--     logged);
--   * webhook.claims holds, per fan-out batch and tenant, the ids of the new
--     deliveries whose first attempt this replica is making, until when. A
--     claim that expires (the replica died before logging the attempt) turns
--     each of its deliveries that still has no attempt into a due row.
-- A successful first attempt therefore writes only its attempt row and a
-- HOT update of its delivery; the table keeps free space on each page for
-- that update (fillfactor 50).
DROP INDEX webhook.deliveries_due_idx;
ALTER TABLE webhook.deliveries SET (fillfactor = 50);

CREATE TABLE webhook.due (
    delivery_id text PRIMARY KEY,
    tenant      text NOT NULL,
    due_at      timestamptz NOT NULL   -- when it is due (or its claim expires)
);
CREATE INDEX due_at_idx ON webhook.due (due_at);

CREATE TABLE webhook.claims (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant        text NOT NULL,
    claimed_until timestamptz NOT NULL,
    delivery_ids  text[] NOT NULL
);
CREATE INDEX claims_until_idx ON webhook.claims (claimed_until);

INSERT INTO webhook.due (delivery_id, tenant, due_at)
SELECT id, tenant, coalesce(next_attempt_at, now()) FROM webhook.deliveries WHERE status = 'pending';

-- Row-level security like every tenant table once 0006 has put it in
-- place: the API's manual retry and replay write due rows for their tenant;
-- claims are the fan-out's own (it runs as the owner), the application role
-- may only read its tenant's.
DO $$
BEGIN
    IF to_regproc('eventline.enable_tenant_rls') IS NOT NULL THEN
        PERFORM eventline.enable_tenant_rls('webhook.due', 'SELECT, INSERT, UPDATE');
        PERFORM eventline.enable_tenant_rls('webhook.claims', 'SELECT');
    ELSE
        ALTER TABLE webhook.due ENABLE ROW LEVEL SECURITY;
        ALTER TABLE webhook.claims ENABLE ROW LEVEL SECURITY;
    END IF;
END
$$;
