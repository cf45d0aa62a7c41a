-- Tenant isolation backed by row-level security, and webhook secrets
-- sealed at rest.
--
-- Roles. The role that runs `eventline migrate` owns every table, and the
-- services log in as it (or as a member of it): table owners bypass RLS, so
-- the cross-tenant workers (projector batches, webhooker fan-out,
-- scheduler, result writer, registry; API key lookup, which runs before the
-- tenant is known) keep working unchanged. Tenant-facing API queries run
-- inside postgres.TenantTx, which does SET LOCAL ROLE eventline_app and sets
-- eventline.tenant for the transaction; the policies below then restrict
-- every row that statement can see or write to that tenant. An unset
-- tenant (NULL or '') matches no row, so it sees nothing and can write
-- nothing.
--
-- eventline_app is NOLOGIN and cluster-global: every database of the
-- cluster shares it, and several databases may be migrated at once, so its
-- creation tolerates losing a race.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'eventline_app') THEN
        BEGIN
            CREATE ROLE eventline_app NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL; -- created at the same moment by a migration of another database
        END;
    END IF;
    -- SET ROLE needs membership (superusers have it implicitly).
    IF NOT pg_has_role(current_user, 'eventline_app', 'MEMBER') THEN
        BEGIN
            EXECUTE format('GRANT eventline_app TO %I', current_user);
        EXCEPTION WHEN unique_violation THEN
            NULL; -- granted concurrently
        END;
    END IF;
END
$$;

-- enable_tenant_rls(t, privileges) puts table t (which has a text column
-- "tenant") under row-level security for eventline_app: rows are visible
-- and writable only when tenant = the transaction's eventline.tenant, and
-- a written row must satisfy the same (WITH CHECK). It grants eventline_app
-- the given privileges on t and USAGE on its schema. Idempotent: call it
-- for every new tenant table (new generations of timeline tables, the
-- notifier's tables).
CREATE FUNCTION eventline.enable_tenant_rls(t regclass, privileges text DEFAULT 'SELECT, INSERT, UPDATE, DELETE')
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    nsp text;
BEGIN
    SELECT n.nspname INTO nsp FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = t;
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('DROP POLICY IF EXISTS tenant_isolation ON %s', t);
    EXECUTE format($p$CREATE POLICY tenant_isolation ON %s TO eventline_app
        USING (tenant = nullif(current_setting('eventline.tenant', true), ''))
        WITH CHECK (tenant = nullif(current_setting('eventline.tenant', true), ''))$p$, t);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO eventline_app', nsp);
    EXECUTE format('GRANT %s ON %s TO eventline_app', privileges, t);
END
$fn$;

-- auth.api_keys: a key is looked up by its id before the tenant is known,
-- so lookups run as the owner. The application role may only read its own
-- tenant's keys.
SELECT eventline.enable_tenant_rls('auth.api_keys', 'SELECT');

-- eventline.dead_letters has no tenant column and only operators read it
-- (`eventline dlq`): RLS without any policy or grant denies the
-- application role every row.
ALTER TABLE eventline.dead_letters ENABLE ROW LEVEL SECURITY;

-- Timelines: which generation serves is not tenant data.
GRANT USAGE ON SCHEMA timeline TO eventline_app;
GRANT SELECT ON timeline.current TO eventline_app;

-- create_generation(g) now also puts the new tables under row-level
-- security: 0003's function keeps making the tables, under a new name. The
-- API only reads timelines (the projector writes as owner); progress is
-- not tenant data and the application role gets no access to it.
ALTER FUNCTION timeline.create_generation(integer) RENAME TO create_generation_tables;

CREATE FUNCTION timeline.create_generation(g integer) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM timeline.create_generation_tables(g);
    PERFORM eventline.enable_tenant_rls(format('%I.events', format('timeline_g%s', g))::regclass, 'SELECT');
    PERFORM eventline.enable_tenant_rls(format('%I.entries', format('timeline_g%s', g))::regclass, 'SELECT');
END
$fn$;

-- Generations that exist already.
DO $$
DECLARE
    s text;
BEGIN
    FOR s IN SELECT nspname FROM pg_namespace WHERE nspname ~ '^timeline_g[0-9]+$' LOOP
        PERFORM eventline.enable_tenant_rls(format('%I.events', s)::regclass, 'SELECT');
        PERFORM eventline.enable_tenant_rls(format('%I.entries', s)::regclass, 'SELECT');
    END LOOP;
END
$$;

-- Webhooks: the API creates, edits and soft-deletes endpoints, lists and
-- retries deliveries, schedules replays, and reads attempts.
SELECT eventline.enable_tenant_rls('webhook.endpoints', 'SELECT, INSERT, UPDATE');
SELECT eventline.enable_tenant_rls('webhook.deliveries', 'SELECT, INSERT, UPDATE');
SELECT eventline.enable_tenant_rls('webhook.attempts', 'SELECT');
GRANT USAGE ON SEQUENCE webhook.endpoint_changes TO eventline_app;

-- The notifier's tables (migration 0005, schema notify): every table there
-- with a tenant column gets the same policy, so they are covered whatever
-- the notifier names them.
DO $$
DECLARE
    t regclass;
BEGIN
    FOR t IN SELECT format('%I.%I', c.table_schema, c.table_name)::regclass
             FROM information_schema.columns c
             JOIN information_schema.tables tb USING (table_schema, table_name)
             WHERE c.table_schema = 'notify' AND c.column_name = 'tenant' AND tb.table_type = 'BASE TABLE' LOOP
        PERFORM eventline.enable_tenant_rls(t);
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'notify') THEN
        GRANT USAGE ON ALL SEQUENCES IN SCHEMA notify TO eventline_app;
    END IF;
END
$$;

-- Webhook secrets sealed at rest (internal/secretbox, AES-256-GCM with the
-- key from EVENTLINE_SECRET_KEY; the row's tenant and id are the
-- additional data, so a sealed value only opens in its own row). The key is
-- not in the database, so the webhooker seals rows still in plaintext
-- (secrets) when it starts, and re-seals rows sealed with an old key.
ALTER TABLE webhook.endpoints
    ALTER COLUMN secrets DROP NOT NULL,
    ADD COLUMN secrets_sealed bytea,
    ADD COLUMN secrets_key    text,     -- id of the key secrets_sealed is sealed with
    ADD CONSTRAINT endpoints_secrets_one_form CHECK ((secrets IS NULL) <> (secrets_sealed IS NULL) AND (secrets_sealed IS NULL) = (secrets_key IS NULL));
