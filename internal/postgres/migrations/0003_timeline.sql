-- Timelines. The tables of one projection live in a schema timeline_g<N>
-- (a generation), so a rebuild can fill generation N+1 from the stream
-- while N keeps serving, then switch timeline.current over.
CREATE SCHEMA IF NOT EXISTS timeline;

-- Which generation serves reads and receives the live projection.
CREATE TABLE timeline.current (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    generation integer NOT NULL,
    switched_at timestamptz NOT NULL DEFAULT now()
);

-- create_generation(g) creates the projection tables of generation g.
--
-- events: one row per event, keyed by (tenant, id) so a redelivered or
--   re-sent event is never stored twice. The feed indexes serve
--   /v1/activity and each of its filters in (occurred_at, seq) order.
-- entries: one row per (event, object it belongs to): its eventable and
--   each parent, so the timeline of a card or of its board is one index
--   range. Filter columns are copied in so filters need no join.
-- progress: the highest stream sequence each consumer has committed.
CREATE FUNCTION timeline.create_generation(g integer) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    s text := format('timeline_g%s', g);
BEGIN
    EXECUTE format('CREATE SCHEMA %I', s);
    EXECUTE format($ddl$
        CREATE TABLE %1$I.events (
            tenant         text NOT NULL,
            id             text NOT NULL,
            seq            bigint NOT NULL,
            type           text NOT NULL,
            action         text NOT NULL,
            eventable_type text NOT NULL,
            eventable_id   text NOT NULL,
            creator_type   text NOT NULL,
            creator_id     text NOT NULL,
            parents        jsonb NOT NULL,
            particulars    jsonb NOT NULL,
            occurred_at    timestamptz NOT NULL,
            recorded_at    timestamptz NOT NULL,
            PRIMARY KEY (tenant, id)
        );
        CREATE INDEX events_feed_idx ON %1$I.events (tenant, occurred_at, seq);
        CREATE INDEX events_type_idx ON %1$I.events (tenant, type, occurred_at, seq);
        CREATE INDEX events_action_idx ON %1$I.events (tenant, action, occurred_at, seq);
        CREATE INDEX events_creator_idx ON %1$I.events (tenant, creator_type, creator_id, occurred_at, seq);
        CREATE INDEX events_eventable_type_idx ON %1$I.events (tenant, eventable_type, occurred_at, seq);

        CREATE TABLE %1$I.entries (
            tenant         text NOT NULL,
            object_type    text NOT NULL,
            object_id      text NOT NULL,
            occurred_at    timestamptz NOT NULL,
            seq            bigint NOT NULL,
            event_id       text NOT NULL,
            type           text NOT NULL,
            action         text NOT NULL,
            eventable_type text NOT NULL,
            creator_type   text NOT NULL,
            creator_id     text NOT NULL,
            PRIMARY KEY (tenant, object_type, object_id, occurred_at, seq)
        );

        CREATE TABLE %1$I.progress (
            consumer   text PRIMARY KEY,
            last_seq   bigint NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
    $ddl$, s);
END
$fn$;

SELECT timeline.create_generation(1);
INSERT INTO timeline.current (generation) VALUES (1);
