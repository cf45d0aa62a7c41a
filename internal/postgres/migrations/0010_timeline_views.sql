-- A stable SQL read surface for timelines (docs/sql.md).
--
-- The tables of a timeline live in timeline_g<N>, renamed at every
-- rebuild. The views timeline.events and timeline.entries always read the
-- generation timeline.current names: a rebuild re-points them in the same
-- transaction that switches timeline.current (timeline.switch_generation),
-- so a query sees the old generation or the new one, never neither.
--
-- Roles, both NOLOGIN and cluster-global like eventline_app; an operator
-- grants one of them to a login role:
--   eventline_reader   reads one tenant at a time: the one the session's
--                      eventline.tenant names. With no tenant set, a query
--                      that reaches a row fails (insufficient_privilege)
--                      instead of answering nothing.
--   eventline_analyst  reads every tenant (reports across tenants), and
--                      nothing but the timelines.
-- Both may only SELECT, and only the timelines. Creating them needs a
-- superuser or CREATEROLE once, as for eventline_app, or an administrator
-- who created them beforehand.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['eventline_reader', 'eventline_analyst'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL; -- created at the same moment by a migration of another database
            END;
        END IF;
    END LOOP;
END
$$;

-- reader_tenant() is the tenant of an eventline_reader session, from the
-- setting eventline.tenant (the one postgres.TenantTx sets for
-- eventline_app). It raises when none is set: a reader that forgot the
-- tenant gets an error, not an empty answer.
CREATE FUNCTION timeline.reader_tenant() RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $fn$
DECLARE
    t text := nullif(current_setting('eventline.tenant', true), '');
BEGIN
    IF t IS NULL THEN
        RAISE EXCEPTION 'eventline.tenant is not set'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'eventline_reader reads the timelines of one tenant at a time.',
                  HINT = 'Run SET eventline.tenant = ''<tenant>'' first (docs/sql.md).';
    END IF;
    RETURN t;
END
$fn$;

-- serving(g) is true when generation g is the current one, and raises
-- serialization_failure otherwise. Every view checks it once per query
-- (a one-time filter): a transaction whose snapshot predates a switch (one
-- in REPEATABLE READ that first reads the views after it) would otherwise
-- read the new tables as of that snapshot, partly or wholly empty; it gets
-- the error any REPEATABLE READ transaction must be ready to retry.
CREATE FUNCTION timeline.serving(g integer) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $fn$
DECLARE
    cur integer;
BEGIN
    SELECT generation INTO cur FROM timeline.current;
    IF cur IS DISTINCT FROM g THEN
        RAISE EXCEPTION 'the timeline views read generation %, but generation % serves', g, cur
            USING ERRCODE = 'serialization_failure',
                  DETAIL = 'A transaction whose snapshot predates a rebuild''s switch sees the previous generation as current.',
                  HINT = 'Retry the transaction.';
    END IF;
    RETURN true;
END
$fn$;

-- grant_readers(g) lets the reader roles read generation g's events and
-- entries (the views are security_invoker: row-level security and grants
-- apply to the role that queries them) under their own policies:
-- reader_tenant for eventline_reader, analyst_all_tenants for
-- eventline_analyst. Idempotent. The tenant_isolation policy of
-- eventline_app is unchanged.
CREATE FUNCTION timeline.grant_readers(g integer) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    s text := format('timeline_g%s', g);
    t text;
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO eventline_reader, eventline_analyst', s);
    FOREACH t IN ARRAY ARRAY['events', 'entries'] LOOP
        EXECUTE format('GRANT SELECT ON %I.%I TO eventline_reader, eventline_analyst', s, t);
        EXECUTE format('DROP POLICY IF EXISTS reader_tenant ON %I.%I', s, t);
        -- A scalar subquery: evaluated once per query, and usable as an
        -- index condition on the leading tenant column.
        EXECUTE format('CREATE POLICY reader_tenant ON %I.%I FOR SELECT TO eventline_reader
            USING (tenant = (SELECT timeline.reader_tenant()))', s, t);
        EXECUTE format('DROP POLICY IF EXISTS analyst_all_tenants ON %I.%I', s, t);
        EXECUTE format('CREATE POLICY analyst_all_tenants ON %I.%I FOR SELECT TO eventline_analyst USING (true)', s, t);
    END LOOP;
END
$fn$;

-- create_generation(g) now also opens the new tables to the reader roles.
CREATE OR REPLACE FUNCTION timeline.create_generation(g integer) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM timeline.create_generation_tables(g);
    PERFORM eventline.enable_tenant_rls(format('%I.events', format('timeline_g%s', g))::regclass, 'SELECT');
    PERFORM eventline.enable_tenant_rls(format('%I.entries', format('timeline_g%s', g))::regclass, 'SELECT');
    PERFORM timeline.grant_readers(g);
END
$fn$;

-- point_views(g) (re)defines the views over generation g. CREATE OR
-- REPLACE keeps each view's identity, grants and comments, and takes an
-- ACCESS EXCLUSIVE lock on it: it waits for queries and transactions
-- that are reading it, and queries arriving meanwhile wait, then read the
-- new definition.
--
-- timeline.entries is one row per (event, object it belongs to), joined
-- to its event for the columns entries do not copy. The join is a LEFT
-- JOIN on the events' primary key, so a query that uses none of those
-- columns does not perform it (the generation check sits on the entries
-- side, where it does not stand in the way of removing the join).
--
-- Stable columns (docs/sql.md): never removed, renamed or retyped; new
-- ones are added at the end.
CREATE FUNCTION timeline.point_views(g integer) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    s text := format('timeline_g%s', g);
BEGIN
    EXECUTE format($v$
        CREATE OR REPLACE VIEW timeline.events WITH (security_invoker = true) AS
        SELECT e.tenant, e.id, e.seq, e.type, e.action, e.eventable_type, e.eventable_id,
               e.creator_type, e.creator_id, e.parents, e.particulars, e.occurred_at, e.recorded_at
        FROM %1$I.events e
        WHERE timeline.serving(%2$s)
    $v$, s, g);
    EXECUTE format($v$
        CREATE OR REPLACE VIEW timeline.entries WITH (security_invoker = true) AS
        SELECT x.tenant, x.object_type, x.object_id, x.event_id, x.seq, x.type, x.action,
               x.eventable_type, e.eventable_id, x.creator_type, x.creator_id,
               e.parents, e.particulars, x.occurred_at, e.recorded_at
        FROM (SELECT * FROM %1$I.entries WHERE timeline.serving(%2$s)) x
        LEFT JOIN %1$I.events e ON e.tenant = x.tenant AND e.id = x.event_id
    $v$, s, g);
END
$fn$;

-- switch_generation(from_g, to_g) makes to_g the generation that serves
-- reads and receives the live projection, and points the views at it, in
-- the caller's transaction: a query sees either both changes or neither.
-- It fails when from_g is not current (another rebuild switched first).
-- It takes the views' locks first, waiting for
-- their readers while the live projection keeps writing, then the row
-- lock on timeline.current, which waits for live batches still writing to
-- from_g (they hold it FOR SHARE). Rolling a rebuild back to a generation
-- kept with --keep-old is switch_generation(new, old).
CREATE FUNCTION timeline.switch_generation(from_g integer, to_g integer) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    IF to_regnamespace(format('timeline_g%s', to_g)) IS NULL THEN
        RAISE EXCEPTION 'timeline generation % does not exist', to_g USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM timeline.point_views(to_g);
    UPDATE timeline.current SET generation = to_g, switched_at = now() WHERE generation = from_g;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'timeline generation % is no longer current', from_g
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Another rebuild switched first.';
    END IF;
END
$fn$;

-- drop_generation(g) drops generation g's schema and everything in it. It
-- refuses the current generation, and refuses while a view outside the
-- schema reads its tables (the stable views, were they not re-pointed, or
-- a view of an operator's own), which DROP SCHEMA CASCADE would silently
-- drop along with them.
CREATE FUNCTION timeline.drop_generation(g integer) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    s text := format('timeline_g%s', g);
    dependents text;
BEGIN
    IF EXISTS (SELECT 1 FROM timeline.current WHERE generation = g) THEN
        RAISE EXCEPTION 'timeline generation % serves reads', g
            USING ERRCODE = 'object_in_use', HINT = 'Switch to another generation first.';
    END IF;
    IF to_regnamespace(s) IS NULL THEN
        RETURN;
    END IF;
    SELECT string_agg(DISTINCT v.oid::regclass::text, ', ') INTO dependents
    FROM pg_depend d
    JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
    JOIN pg_class v ON v.oid = r.ev_class
    JOIN pg_class t ON d.refclassid = 'pg_class'::regclass AND t.oid = d.refobjid
    WHERE t.relnamespace = to_regnamespace(s) AND v.relnamespace <> t.relnamespace;
    IF dependents IS NOT NULL THEN
        RAISE EXCEPTION 'cannot drop timeline generation %: views outside % read its tables: %', g, s, dependents
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'Define such views over timeline.events and timeline.entries instead.';
    END IF;
    EXECUTE format('DROP SCHEMA %I CASCADE', s);
END
$fn$;

-- Only the owner (the migrating role, as which rebuilds run) changes
-- generations; the views' helpers stay callable by every role that reads
-- them.
REVOKE EXECUTE ON FUNCTION timeline.grant_readers(integer), timeline.point_views(integer),
    timeline.switch_generation(integer, integer), timeline.drop_generation(integer) FROM PUBLIC;

-- Generations that exist already, and the views over the current one.
DO $$
DECLARE
    g integer;
BEGIN
    FOR g IN SELECT substr(nspname, 11)::int FROM pg_namespace WHERE nspname ~ '^timeline_g[0-9]+$' LOOP
        PERFORM timeline.grant_readers(g);
    END LOOP;
    PERFORM timeline.point_views((SELECT generation FROM timeline.current));
END
$$;

COMMENT ON VIEW timeline.events IS
    'One row per event of the current timeline generation. Stable columns: docs/sql.md.';
COMMENT ON VIEW timeline.entries IS
    'One row per (event, object it belongs to: its eventable and each parent) of the current timeline generation, with the event''s columns. Stable columns: docs/sql.md.';

GRANT USAGE ON SCHEMA timeline TO eventline_reader, eventline_analyst;
GRANT SELECT ON timeline.events, timeline.entries, timeline.current TO eventline_reader, eventline_analyst;
