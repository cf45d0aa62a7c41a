-- Shared fan-outs in chunks (docs/architecture.md §15).
--
-- Until now an event to more than WEBHOOK_SHARE_ABOVE endpoints was
-- recorded as one pending delivery and one due row per endpoint, and every
-- replica's scheduler claimed due rows (an update of each), attempted them
-- and logged each outcome (an update of the delivery, a delete of the due
-- row): every delivery of a large fan-out was written four times. Now the
-- fan-out records one chunk row per WEBHOOK_CHUNK endpoints; a replica
-- claims a whole chunk, makes its first attempts, and records each
-- delivery once with its outcome, deleting the chunk in the same
-- statement, as a fan-out that is not shared does.
--
-- A chunk is due for any replica from due_at: now when recorded, the end
-- of its claim once a replica took it (renewed while that replica works
-- on it). A chunk taken again after a claim ended, or recorded from a
-- message delivered again, is recorded first and attempted after
-- (record_first), so no receiver gets an event twice without a fault.
-- (tenant, event_id, n) keeps a message delivered again from cutting the
-- same fan-out twice.
CREATE TABLE webhook.chunks (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant       text NOT NULL,
    event_id     text NOT NULL,
    event_seq    bigint NOT NULL,
    n            int NOT NULL,          -- the chunk's place in its event's fan-out
    endpoint_ids text[] NOT NULL,
    due_at       timestamptz NOT NULL,
    claimed_by   text,                  -- the replica that took it last
    record_first boolean NOT NULL DEFAULT false,
    UNIQUE (tenant, event_id, n)
);
CREATE INDEX chunks_due_idx ON webhook.chunks (due_at);

-- Chunks are the fan-out's own (it runs as the owner), like claims: the
-- application role may only read its tenant's.
DO $$
BEGIN
    IF to_regproc('eventline.enable_tenant_rls') IS NOT NULL THEN
        PERFORM eventline.enable_tenant_rls('webhook.chunks', 'SELECT');
    ELSE
        ALTER TABLE webhook.chunks ENABLE ROW LEVEL SECURITY;
    END IF;
END
$$;
