package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/testenv"
)

// tenantTable is a table under row-level security and how to make one of
// its rows for a tenant ($1).
type tenantTable struct {
	name   string
	insert string
	// readable and writable say what eventline_app was granted; without the
	// grant every attempt must fail with insufficient_privilege.
	readable, writable bool
}

var tenantTables = []tenantTable{
	{"auth.api_keys", `INSERT INTO auth.api_keys (id, tenant, secret_hash, scopes) VALUES (substr(md5(random()::text), 1, 16), $1, sha256('x'), '{read}')`, true, false},
	{"timeline_g1.events", eventsInsert("timeline_g1"), true, false},
	{"timeline_g1.entries", entriesInsert("timeline_g1"), true, false},
	// A generation created after migration 0006 (a rebuild) gets the policies too.
	{"timeline_g2.events", eventsInsert("timeline_g2"), true, false},
	{"timeline_g2.entries", entriesInsert("timeline_g2"), true, false},
	{"webhook.endpoints", `INSERT INTO webhook.endpoints (tenant, id, url, events, secrets) VALUES ($1, gen_random_uuid()::text, 'https://example.com/h', '{*}', '[]')`, true, true},
	{"webhook.deliveries", `INSERT INTO webhook.deliveries (id, tenant, endpoint_id, event_id, event_seq, event_type) VALUES (gen_random_uuid()::text, $1, 'ep', gen_random_uuid()::text, 1, 'card.closed')`, true, true},
	{"webhook.attempts", `INSERT INTO webhook.attempts (delivery_id, n, tenant, endpoint_id, at, duration_ms) VALUES (gen_random_uuid()::text, 1, $1, 'ep', now(), 1)`, true, false},
	{"eventline.rejected_events", `INSERT INTO eventline.rejected_events (stream_seq, tenant, subject, errors, body, body_size, stream_time)
		VALUES ((random() * 1e15)::bigint, $1, 'events.' || $1 || '.card.closed', '[]', '\x7b7d', 2, now())`, true, false},
}

func eventsInsert(s string) string {
	return `INSERT INTO ` + s + `.events (tenant, id, seq, type, action, eventable_type, eventable_id, creator_type, creator_id, parents, particulars, occurred_at, recorded_at)
		VALUES ($1, gen_random_uuid()::text, 1, 'card.closed', 'closed', 'card', 'c1', 'user', 'u1', '[]', '{}', now(), now())`
}

func entriesInsert(s string) string {
	return `INSERT INTO ` + s + `.entries (tenant, object_type, object_id, occurred_at, seq, event_id, type, action, eventable_type, creator_type, creator_id)
		VALUES ($1, 'card', gen_random_uuid()::text, now(), 1, 'e1', 'card.closed', 'closed', 'card', 'user', 'u1')`
}

// ownerDB returns a fresh database's URL and a pool on it as the owner.
func ownerDB(t *testing.T) (string, *pgxpool.Pool) {
	t.Helper()
	dbURL := testenv.Database(t)
	owner, err := postgres.Open(context.Background(), dbURL)
	require.NoError(t, err)
	t.Cleanup(owner.Close)
	return dbURL, owner
}

// appLogin creates a LOGIN role that is a member of eventline_app (dropped
// when the test ends) and returns a pool on dbURL connected as it.
func appLogin(t *testing.T, owner *pgxpool.Pool, dbURL string) *pgxpool.Pool {
	return login(t, owner, dbURL, "el_test_app_", " IN ROLE "+postgres.AppRole)
}

// login creates a LOGIN role named prefix+random with the given options,
// dropped when the test ends, and connects to dbURL as it.
func login(t *testing.T, owner *pgxpool.Pool, dbURL, prefix, options string) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	role := prefix + hex.EncodeToString(b)
	_, err := owner.Exec(ctx, "CREATE ROLE "+role+" LOGIN"+options)
	require.NoError(t, err)
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	u.User = url.User(role)
	pool, err := postgres.Open(ctx, u.String())
	require.NoError(t, err, "connect as %s (the test server must accept it, e.g. trust auth on loopback)", role)
	t.Cleanup(func() {
		pool.Close()
		// The role owns nothing; its grants go with the test database.
		_, err := owner.Exec(context.Background(), "DROP OWNED BY "+role+"; DROP ROLE "+role)
		if err != nil {
			t.Logf("drop role %s: %v", role, err)
		}
	})
	return pool
}

// emptyTenant stands for eventline.tenant set to the empty string (what a
// session sees after a transaction that had set it ends).
const emptyTenant = "<empty>"

// setTenant sets eventline.tenant for tx: "" leaves it unset.
func setTenant(ctx context.Context, tx pgx.Tx, tenant string) error {
	switch tenant {
	case "":
		return nil
	case emptyTenant:
		tenant = ""
	}
	_, err := tx.Exec(ctx, "SELECT set_config('eventline.tenant', $1, true)", tenant)
	return err
}

// exec runs sql in its own transaction on pool with eventline.tenant set to
// tenant (see setTenant) and returns the rows it touched.
func exec(ctx context.Context, pool *pgxpool.Pool, tenant, sql string, args ...any) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := setTenant(ctx, tx, tenant); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, sql, args...)
		n = tag.RowsAffected()
		return err
	})
	return n, err
}

func count(ctx context.Context, pool *pgxpool.Pool, tenant, sql string) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := setTenant(ctx, tx, tenant); err != nil {
			return err
		}
		return tx.QueryRow(ctx, sql).Scan(&n)
	})
	return n, err
}

func requireDenied(t *testing.T, err error, what string) {
	t.Helper()
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr) && pgErr.Code == "42501", "%s: want insufficient_privilege (42501), got %v", what, err)
}

// TestTenantIsolation connects as a separate LOGIN role that is a member of
// eventline_app and proves, for every tenant table, that tenant A reads
// only its own rows and can neither insert, update nor delete B's, and that
// with no tenant set nothing is visible or writable.
func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL, owner := ownerDB(t)
	_, err := owner.Exec(ctx, "SELECT timeline.create_generation(2)")
	require.NoError(t, err)
	for _, tt := range tenantTables {
		for _, tenant := range []string{"a", "a", "b", "b", "b"} {
			_, err := owner.Exec(ctx, tt.insert, tenant)
			require.NoError(t, err, tt.name)
		}
	}
	_, err = owner.Exec(ctx, `INSERT INTO eventline.dead_letters (consumer, stream_seq, subject, data, error) VALUES ('projector', 1, 'events.b.card.closed', '\x00', 'bad')`)
	require.NoError(t, err)
	app := appLogin(t, owner, dbURL)

	snapshot := func(table string) string {
		var s string
		require.NoError(t, owner.QueryRow(ctx, fmt.Sprintf(`SELECT string_agg(t::text, '|' ORDER BY t::text) FROM %s t WHERE tenant = 'b'`, table)).Scan(&s))
		return s
	}
	for _, tt := range tenantTables {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshot(tt.name)
			// Reads.
			n, err := count(ctx, app, "a", "SELECT count(*) FROM "+tt.name)
			require.NoError(t, err)
			require.EqualValues(t, 2, n, "tenant a sees exactly its own rows")
			n, err = count(ctx, app, "a", "SELECT count(*) FROM "+tt.name+" WHERE tenant = 'b'")
			require.NoError(t, err)
			require.Zero(t, n, "tenant a asking for b's rows by name")
			for _, unset := range []string{"", emptyTenant} {
				n, err = count(ctx, app, unset, "SELECT count(*) FROM "+tt.name)
				require.NoError(t, err)
				require.Zero(t, n, "no tenant set (%q) sees nothing", unset)
				_, err = exec(ctx, app, unset, tt.insert, "a")
				requireDenied(t, err, "insert with no tenant")
			}

			// Writes as tenant a to b's rows, and with no tenant.
			_, err = exec(ctx, app, "a", tt.insert, "b")
			requireDenied(t, err, "a inserts a row of b")
			_, err = exec(ctx, app, "", tt.insert, "b")
			requireDenied(t, err, "insert with no tenant")
			_, err = exec(ctx, app, "a", "UPDATE "+tt.name+" SET tenant = 'b' WHERE tenant = 'a'")
			requireDenied(t, err, "a moves its rows to b")
			for _, tenant := range []string{"a", "", emptyTenant} {
				n, err := exec(ctx, app, tenant, "UPDATE "+tt.name+" SET tenant = tenant WHERE tenant = 'b'")
				if tt.writable {
					require.NoError(t, err)
					require.Zero(t, n, "tenant %q updates b's rows", tenant)
				} else {
					requireDenied(t, err, "update without the privilege")
				}
				n, err = exec(ctx, app, tenant, "DELETE FROM "+tt.name+" WHERE tenant = 'b'")
				requireDenied(t, err, "delete (never granted)")
				require.Zero(t, n)
			}
			if tt.writable {
				// The grant is real: a writes its own rows.
				_, err = exec(ctx, app, "a", tt.insert, "a")
				require.NoError(t, err, "a inserts its own row")
				n, err := exec(ctx, app, "a", "UPDATE "+tt.name+" SET tenant = tenant WHERE true")
				require.NoError(t, err)
				require.EqualValues(t, 3, n, "a updates exactly its own rows")
			}
			require.Equal(t, before, snapshot(tt.name), "b's rows are unchanged")
		})
	}
	t.Run("eventline.dead_letters", func(t *testing.T) {
		_, err := count(ctx, app, "b", "SELECT count(*) FROM eventline.dead_letters")
		requireDenied(t, err, "dead letters are for operators only")
		_, err = exec(ctx, app, "b", `INSERT INTO eventline.dead_letters (consumer, stream_seq, subject, data, error) VALUES ('projector', 2, 'events.b.card.closed', '\x00', 'bad')`)
		requireDenied(t, err, "dead letters are for operators only")
	})
	t.Run("TenantTx", func(t *testing.T) {
		// The helper the API uses switches to eventline_app from the owner
		// (a superuser in tests) and confines it just the same.
		var n int64
		require.NoError(t, postgres.TenantTx(ctx, owner, "a", func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, "SELECT count(*) FROM webhook.endpoints").Scan(&n)
		}))
		require.EqualValues(t, 3, n)
		err := postgres.TenantTx(ctx, owner, "a", func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, tenantTables[5].insert, "b")
			return err
		})
		requireDenied(t, err, "TenantTx a inserts for b")
		// SET LOCAL: the pooled connection is the owner again afterwards.
		var user string
		var tenant *string
		require.NoError(t, owner.QueryRow(ctx, "SELECT current_user, nullif(current_setting('eventline.tenant', true), '')").Scan(&user, &tenant))
		require.NotEqual(t, postgres.AppRole, user)
		require.Nil(t, tenant)
		require.Error(t, postgres.TenantTx(ctx, owner, "a'; DROP TABLE x; --", func(pgx.Tx) error { return nil }))
	})
}

// TestEveryTenantTableHasRLS fails when a table with a tenant column (a new
// one, e.g. the notifier's) is not under row-level security with the
// tenant_isolation policy: call eventline.enable_tenant_rls for it.
func TestEveryTenantTableHasRLS(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t)
	rows, err := pool.Query(context.Background(), `
		SELECT c.oid::regclass::text FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant' AND NOT a.attisdropped
		WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
		  AND NOT (c.relrowsecurity AND EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'tenant_isolation'))
		ORDER BY 1`)
	require.NoError(t, err)
	missing, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Empty(t, missing, "tables with a tenant column but no row-level security: SELECT eventline.enable_tenant_rls('schema.table', 'privileges')")
}

// TestCheckAppRole: a login role that is not a member of eventline_app is
// told how to fix it; a member (and the owner) passes.
func TestCheckAppRole(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL, owner := ownerDB(t)
	require.NoError(t, postgres.CheckSchema(ctx, owner))
	require.NoError(t, postgres.CheckAppRole(ctx, appLogin(t, owner, dbURL)))

	outsider := login(t, owner, dbURL, "el_test_outsider_", "")
	err := postgres.CheckAppRole(ctx, outsider)
	require.ErrorContains(t, err, "GRANT eventline_app TO")
	err = postgres.TenantTx(ctx, outsider, "a", func(pgx.Tx) error { return nil })
	requireDenied(t, err, "SET ROLE without membership")
}
