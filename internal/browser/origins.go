package browser

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/ttlcache"
	"github.com/eventline/eventline/pkg/events"
)

// MaxOrigins bounds the origins of one tenant.
const MaxOrigins = 32

// Origins keeps the origins each tenant's pages are served from
// (eventline.browser_origins) and caches them for OriginsCacheTTL, so a
// change reaches every replica within that time.
type Origins struct {
	pool     *pgxpool.Pool
	byTenant *ttlcache.Cache[[]string]
	anyOf    *ttlcache.Cache[bool] // origin -> listed by some tenant
}

// OriginsCacheTTL is how long a replica may use an origin list after it
// changed.
const OriginsCacheTTL = 5 * time.Second

// NewOrigins returns the origin store over pool.
func NewOrigins(pool *pgxpool.Pool) *Origins {
	return &Origins{pool: pool, byTenant: ttlcache.New[[]string](OriginsCacheTTL), anyOf: ttlcache.New[bool](OriginsCacheTTL)}
}

// CheckOrigin returns the canonical form of an origin ("https://app.example.com",
// "http://localhost:3000") or an error saying what is wrong with it.
func CheckOrigin(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(s, " \t\r\n") {
		return "", fmt.Errorf("must be an origin such as https://app.example.com or http://localhost:3000 (scheme, host and port only)")
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}

// Of returns the tenant's origins, sorted.
func (o *Origins) Of(ctx context.Context, tenant string) ([]string, error) {
	if list, ok := o.byTenant.Get(tenant); ok {
		return list, nil
	}
	rows, err := o.pool.Query(ctx, `SELECT origin FROM eventline.browser_origins WHERE tenant = $1 ORDER BY origin`, tenant)
	if err != nil {
		return nil, fmt.Errorf("read browser origins: %w", err)
	}
	list, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read browser origins: %w", err)
	}
	o.byTenant.Put(tenant, list)
	return list, nil
}

// Allowed reports whether the tenant lists origin.
func (o *Origins) Allowed(ctx context.Context, tenant, origin string) (bool, error) {
	list, err := o.Of(ctx, tenant)
	if err != nil {
		return false, err
	}
	return slices.Contains(list, strings.ToLower(origin)), nil
}

// Registered reports whether any tenant lists origin: the answer for a
// request whose tenant is not known (a preflight without a token, a
// refused token), so that the page can read why it was refused.
func (o *Origins) Registered(ctx context.Context, origin string) (bool, error) {
	origin = strings.ToLower(origin)
	if ok, cached := o.anyOf.Get(origin); cached {
		return ok, nil
	}
	var found bool
	err := o.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM eventline.browser_origins WHERE origin = $1)`, origin).Scan(&found)
	if err != nil {
		return false, fmt.Errorf("look up browser origin: %w", err)
	}
	o.anyOf.Put(origin, found)
	return found, nil
}

// ParseOrigins checks a list of origins (CheckOrigin) and returns it
// canonical, sorted and without repeats, or the errors by field path.
func ParseOrigins(origins []string) ([]string, []events.FieldError) {
	var errs []events.FieldError
	clean := []string{}
	if len(origins) > MaxOrigins {
		errs = append(errs, events.FieldError{Field: "origins", Message: fmt.Sprintf("at most %d origins", MaxOrigins)})
	}
	for i, s := range origins {
		c, err := CheckOrigin(s)
		if err != nil {
			errs = append(errs, events.FieldError{Field: fmt.Sprintf("origins[%d]", i), Message: err.Error()})
			continue
		}
		if !slices.Contains(clean, c) {
			clean = append(clean, c)
		}
	}
	slices.Sort(clean)
	return clean, errs
}

// Set replaces the tenant's origins with a list ParseOrigins returned,
// as the tenant under row-level security.
func (o *Origins) Set(ctx context.Context, tenant string, origins []string) error {
	err := postgres.TenantTx(ctx, o.pool, tenant, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM eventline.browser_origins WHERE tenant = $1`, tenant); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO eventline.browser_origins (tenant, origin) SELECT $1, unnest($2::text[])`, tenant, origins)
		return err
	})
	if err != nil {
		return fmt.Errorf("store browser origins: %w", err)
	}
	o.byTenant.Forget(tenant)
	o.anyOf.Forget("")
	return nil
}
