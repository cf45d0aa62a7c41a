-- Rejections: messages on events.<tenant>.> that failed validation, kept
-- once per message (every consumer reads the same message and rejects it
-- the same way) so that the tenant sees them at GET /v1/rejected-events.
--
-- A table of its own rather than a view over eventline.dead_letters:
-- dead letters are per consumer (one message, three rows), hold failures
-- that are not the producer's (a database refusal, with server details in
-- the error) and stay operator-only; a rejection is one row per stream
-- message, carries the tenant from the subject and the field errors, and
-- is under row-level security like every tenant table. The consumers write
-- it in the statement that writes their dead letter (deadletter.Add).
CREATE TABLE eventline.rejected_events (
    stream_seq  bigint PRIMARY KEY,
    -- The subject's second token: NATS permissions confine a producer to
    -- events.<its tenant>.>. NULL when the subject has no valid tenant
    -- token: such a rejection is for operators only.
    tenant      text,
    subject     text NOT NULL,
    -- The body's id, when it has a valid one.
    event_id    text,
    -- [{"index", "field", "message"}], exactly as events.ParseStored gives
    -- them. json, not jsonb: a field error may name a key holding
    -- "\u0000", which jsonb cannot store.
    errors      json NOT NULL,
    -- The first bytes of the body as published (deadletter.MaxRejectedBody),
    -- and its whole size.
    body        bytea NOT NULL,
    body_size   integer NOT NULL,
    stream_time timestamptz NOT NULL,
    rejected_at timestamptz NOT NULL DEFAULT now(),
    -- Set when every dead letter of the message was replayed successfully.
    replayed_at timestamptz
);

-- Newest first per tenant, keyset pages on (stream_time, stream_seq).
CREATE INDEX rejected_events_tenant_idx ON eventline.rejected_events (tenant, stream_time, stream_seq);

-- A rejection is replayed to every consumer that dead-lettered it, and is
-- replayed once none of them has it pending: both look letters up by
-- sequence.
CREATE INDEX dead_letters_seq_idx ON eventline.dead_letters (stream_seq);

-- The API reads them as the tenant; only the consumers (as owner) write.
SELECT eventline.enable_tenant_rls('eventline.rejected_events', 'SELECT');
