-- A dead letter keeps what a replay needs to rebuild its event exactly as
-- the consumer saw it: the stream body is the producer's input form, and
-- consumers derive recorded_at and, when the body has none, the id from the
-- message's stream timestamp; the Nats-Msg-Id header is checked against the
-- body. Letters kept before have NULL here: a replay then falls back to the
-- recorded_at that old bodies carry.
ALTER TABLE eventline.dead_letters
    ADD COLUMN stream_time timestamptz,
    ADD COLUMN msg_id text;
