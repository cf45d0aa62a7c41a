package postgres

import (
	"context"
	"errors"
	"fmt"

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
// user of the pooled connection. They are pipelined with BEGIN, so the
// transaction costs the same round trips as a plain one.
//
// Cross-tenant work (projection batches, webhook fan-out and scheduling,
// API key lookup) does not use TenantTx: it runs as the owning role, which
// row-level security does not restrict.
func TenantTx(ctx context.Context, pool *pgxpool.Pool, tenant string, fn func(pgx.Tx) error) error {
	return TenantTxOptions(ctx, pool, tenant, pgx.TxOptions{}, fn)
}

// TenantTxOptions is TenantTx with transaction options (opts.BeginQuery
// must be empty).
func TenantTxOptions(ctx context.Context, pool *pgxpool.Pool, tenant string, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	tx, err := beginTenant(ctx, pool, tenant, opts, nil, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // no-op after Commit
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// TenantBatch is TenantTx for reads that fit in one round trip: b's
// statements are sent together with BEGIN and the role and tenant
// settings, read gets their results in order (it must read every one), and
// the transaction is committed: two round trips in all.
func TenantBatch(ctx context.Context, pool *pgxpool.Pool, tenant string, opts pgx.TxOptions, b *pgx.Batch, read func(pgx.BatchResults) error) error {
	tx, err := beginTenant(ctx, pool, tenant, opts, b, read)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	return tx.Commit(ctx)
}

// beginTenant opens a tenant transaction, sending b's statements with it
// and handing their results to read.
func beginTenant(ctx context.Context, pool *pgxpool.Pool, tenant string, opts pgx.TxOptions, b *pgx.Batch, read func(pgx.BatchResults) error) (pgx.Tx, error) {
	// The tenant comes from an API key and is validated there; checking it
	// again keeps a mistake from running a query for "no tenant".
	if !events.IsTenant(tenant) {
		return nil, fmt.Errorf("tenant transaction: %q is not a tenant", tenant)
	}
	if opts.BeginQuery != "" {
		return nil, errors.New("tenant transaction: BeginQuery must be empty")
	}
	full := &pgx.Batch{}
	full.BeginTx(opts)
	full.Queue("SET LOCAL ROLE " + AppRole)
	full.Queue("SELECT set_config('eventline.tenant', $1, true)", tenant)
	if b != nil {
		full.QueuedQueries = append(full.QueuedQueries, b.QueuedQueries...)
	}
	br := pool.SendBatch(ctx, full)
	tx := br.Tx()
	fail := func(err error) (pgx.Tx, error) {
		_ = br.Close()
		if tx != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
		return nil, fmt.Errorf("tenant transaction: %w", err)
	}
	for range 3 {
		if _, err := br.Exec(); err != nil {
			return fail(err)
		}
	}
	if read != nil {
		if err := read(br); err != nil {
			_ = br.Close()
			if tx != nil {
				_ = tx.Rollback(context.WithoutCancel(ctx))
			}
			return nil, err
		}
	}
	if err := br.Close(); err != nil {
		return fail(err)
	}
	return tx, nil
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
