-- Messages a consumer could not process (undecodable, invalid, or refused by
-- the database), kept with the reason so an operator can inspect and replay
-- them (`eventline dlq list|replay`). One row per consumer and stream
-- sequence: a message dead-lettered twice keeps its latest error.
CREATE TABLE eventline.dead_letters (
    consumer    text NOT NULL,
    stream_seq  bigint NOT NULL,
    subject     text NOT NULL,
    data        bytea NOT NULL,
    error       text NOT NULL,
    failures    integer NOT NULL DEFAULT 1,
    failed_at   timestamptz NOT NULL DEFAULT now(),
    replayed_at timestamptz,
    PRIMARY KEY (consumer, stream_seq)
);

CREATE INDEX dead_letters_pending_idx ON eventline.dead_letters (consumer, failed_at) WHERE replayed_at IS NULL;
