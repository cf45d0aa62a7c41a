package notifier

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pipeTx is an inbox transaction whose BEGIN travels with its first round
// trip and whose COMMIT with its last: at low rates each round trip wakes
// the notifier and its backend, and costs more CPU than the statements it
// carries (BENCHMARKS.md, "Where the CPU goes at low rates").
//
// pgx runs a batch as one pipeline ending in one Sync: when a statement
// fails, the server skips every statement after it up to the Sync, COMMIT
// included, and the transaction is left aborted (TxStatus 'E'); end then
// rolls it back. Once a COMMIT has run the connection is outside a
// transaction (TxStatus 'I') and the pgx.Tx is never used again: its
// Commit and Rollback would each cost a round trip ("no transaction in
// progress"). A connection goes back to the pool only outside a
// transaction; pgxpool destroys one released inside a transaction, or
// whose rollback failed.
type pipeTx struct {
	conn  *pgxpool.Conn
	tx    pgx.Tx // once BEGIN has been sent
	ended bool   // COMMIT has run: the server ended the transaction
}

// beginPipelined takes a connection for a pipelined transaction. Nothing
// is sent until its first round trip (send, or commit). The caller must
// call end.
func beginPipelined(ctx context.Context, pool *pgxpool.Pool) (*pipeTx, error) {
	c, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	return &pipeTx{conn: c}, nil
}

// send sends b's statements in one round trip — after BEGIN when it is
// the transaction's first — and hands their results to read (nil: Close
// reads them). An error of read or of any statement fails the
// transaction.
func (t *pipeTx) send(ctx context.Context, b *pgx.Batch, read func(pgx.BatchResults) error) error {
	var br pgx.BatchResults
	if t.tx == nil {
		full := &pgx.Batch{}
		full.BeginTx(pgx.TxOptions{})
		full.QueuedQueries = append(full.QueuedQueries, b.QueuedQueries...)
		br = t.conn.SendBatch(ctx, full)
		t.tx = br.Tx()
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return fmt.Errorf("begin: %w", err)
		}
	} else {
		br = t.tx.SendBatch(ctx, b)
	}
	var err error
	if read != nil {
		err = read(br)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}

// transaction returns the pgx transaction for statements sent on their
// own, sending BEGIN first when nothing has been sent yet.
func (t *pipeTx) transaction(ctx context.Context) (pgx.Tx, error) {
	if t.tx == nil {
		if err := t.send(ctx, &pgx.Batch{}, nil); err != nil {
			return nil, err
		}
	}
	return t.tx, nil
}

// commit sends b's statements followed by COMMIT in one round trip (BEGIN
// ahead of them when nothing was sent yet) and hands b's results to read,
// which must read every one of them and nothing more. The server commits
// unless a statement fails, whatever read returns: b must hold only
// statements whose results decide nothing. A transaction that sent
// nothing and has nothing to send costs no round trip.
func (t *pipeTx) commit(ctx context.Context, b *pgx.Batch, read func(pgx.BatchResults) error) error {
	if t.tx == nil && b.Len() == 0 {
		t.ended = true
		return nil
	}
	b.Queue("commit")
	var tag pgconn.CommandTag
	err := t.send(ctx, b, func(br pgx.BatchResults) error {
		if read != nil {
			if err := read(br); err != nil {
				return err
			}
		}
		var err error
		if tag, err = br.Exec(); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		return nil
	})
	pc := t.conn.Conn().PgConn()
	if !pc.IsClosed() && pc.TxStatus() == 'I' {
		t.ended = true
	}
	switch {
	case err != nil:
		return err
	case !t.ended:
		return errors.New("commit: the connection is still in a transaction")
	case tag.String() == "ROLLBACK":
		return pgx.ErrTxCommitRollback
	}
	return nil
}

// end rolls the transaction back unless the server ended it (a failure
// left it open or aborted), and gives the connection back to the pool.
func (t *pipeTx) end(ctx context.Context) {
	if t.tx != nil && !t.ended && t.conn.Conn().PgConn().TxStatus() != 'I' {
		// A failed rollback closes the connection, which the pool then
		// destroys.
		_ = t.tx.Rollback(ctx)
	}
	t.conn.Release()
}
