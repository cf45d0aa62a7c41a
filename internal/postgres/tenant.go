package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/pkg/events"
)

// AppRole is the role tenant-facing queries run as. Migration 0006 creates
// it and puts every tenant table under row-level security for it: a row is
// visible and writable only when its tenant column equals the transaction's
// eventline.tenant setting.
const AppRole = "eventline_app"

// TenantTx runs fn in one transaction as AppRole with eventline.tenant set
// to tenant, so row-level security confines every statement of fn to that
// tenant's rows whatever its WHERE clause says. The role and the setting
// are SET LOCAL: they end with the transaction and never leak to the next
// user of the pooled connection. They are sent together with BEGIN, so
// the transaction costs the same round trips as a plain one.
//
// Cross-tenant work (projection batches, webhook fan-out and scheduling,
// API key lookup) does not use TenantTx: it runs as the owning role, which
// row-level security does not restrict.
func TenantTx(ctx context.Context, pool *pgxpool.Pool, tenant string, fn func(pgx.Tx) error) error {
	return TenantTxOptions(ctx, pool, tenant, pgx.TxOptions{}, fn)
}

// TenantTxOptions is TenantTx with an isolation level, access mode and
// deferrable mode (opts.BeginQuery must be empty).
func TenantTxOptions(ctx context.Context, pool *pgxpool.Pool, tenant string, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	begin, err := tenantBegin(tenant, opts)
	if err != nil {
		return err
	}
	opts.BeginQuery = begin
	return pgx.BeginTxFunc(ctx, pool, opts, fn)
}

// tenantBegin returns the statements that open a tenant transaction. The
// tenant is checked against the tenant syntax ([a-z0-9_-] only), so it is
// safe inside a string literal.
func tenantBegin(tenant string, opts pgx.TxOptions) (string, error) {
	if !events.IsTenant(tenant) {
		return "", fmt.Errorf("tenant transaction: %q is not a tenant", tenant)
	}
	if opts.BeginQuery != "" {
		return "", errors.New("tenant transaction: BeginQuery must be empty")
	}
	var b strings.Builder
	b.WriteString("BEGIN")
	if opts.IsoLevel != "" {
		b.WriteString(" ISOLATION LEVEL " + string(opts.IsoLevel))
	}
	if opts.AccessMode != "" {
		b.WriteString(" " + string(opts.AccessMode))
	}
	if opts.DeferrableMode != "" {
		b.WriteString(" " + string(opts.DeferrableMode))
	}
	b.WriteString("; SET LOCAL ROLE " + AppRole + "; SELECT set_config('eventline.tenant', '" + tenant + "', true)")
	return b.String(), nil
}

// CheckAppRole returns an error when the connected role cannot switch to
// AppRole, so a service fails at start-up with a fix instead of failing
// every tenant request.
func CheckAppRole(ctx context.Context, pool *pgxpool.Pool) error {
	var ok bool
	err := pool.QueryRow(ctx, `SELECT coalesce((SELECT pg_has_role(current_user, oid, 'MEMBER') FROM pg_roles WHERE rolname = $1), false)`, AppRole).Scan(&ok)
	if err != nil {
		return fmt.Errorf("check role %s: %w", AppRole, err)
	}
	if !ok {
		return fmt.Errorf("the database role of DATABASE_URL is not a member of %s, which tenant API queries run as: "+
			"run `eventline migrate` as this role, or have an administrator run GRANT %s TO <this role>", AppRole, AppRole)
	}
	return nil
}
