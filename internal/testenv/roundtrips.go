package testenv

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// RoundTrips counts the Postgres round trips of the pools configured with
// it while it is on, and records what they sent, to say what the round
// trips were when a count is too high. A round trip is a write to the
// server after a read from it, or a connection's first write: a pipelined
// batch is one, however many statements and flushes it takes; BEGIN,
// COMMIT, pings and statement preparations count like any other. At low
// rates every round trip wakes a service and its backend (BENCHMARKS.md,
// "Where the CPU goes at low rates"), so the services' tests hold their
// code to counts with it.
type RoundTrips struct {
	mu   sync.Mutex
	on   bool
	n    int
	sent Statements
}

// Statements is what a pool sent: each lone statement, and each batch as
// one entry, its statements joined by " ; ", whitespace collapsed.
type Statements []string

// String lists the statements one per paragraph.
func (s Statements) String() string { return strings.Join(s, "\n---\n") }

// Configure makes cfg's connections dial through r and trace into it.
func (r *RoundTrips) Configure(cfg *pgxpool.Config) {
	dial := cfg.ConnConfig.DialFunc
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c := &flightConn{Conn: conn, r: r}
		c.read.Store(true)
		return c, nil
	}
	cfg.ConnConfig.Tracer = r
}

// Start counts from zero, and records, until Stop.
func (r *RoundTrips) Start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.on, r.n, r.sent = true, 0, nil
}

// Stop ends the count and returns it, with what was sent meanwhile.
func (r *RoundTrips) Stop() (int, Statements) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.on = false
	return r.n, r.sent
}

func (r *RoundTrips) record(sql ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.on {
		return
	}
	for i, s := range sql {
		sql[i] = strings.Join(strings.Fields(s), " ")
	}
	r.sent = append(r.sent, strings.Join(sql, " ; "))
}

func (r *RoundTrips) flight() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.on {
		r.n++
	}
}

// TraceQueryStart implements pgx.QueryTracer.
func (r *RoundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.record(d.SQL)
	return ctx
}

// TraceQueryEnd implements pgx.QueryTracer.
func (r *RoundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TraceBatchStart implements pgx.BatchTracer.
func (r *RoundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	sql := make([]string, len(d.Batch.QueuedQueries))
	for i, q := range d.Batch.QueuedQueries {
		sql[i] = q.SQL
	}
	r.record(sql...)
	return ctx
}

// TraceBatchQuery implements pgx.BatchTracer.
func (r *RoundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

// TraceBatchEnd implements pgx.BatchTracer.
func (r *RoundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// flightConn counts a new round trip at each write that follows a read.
type flightConn struct {
	net.Conn
	r    *RoundTrips
	read atomic.Bool
}

func (c *flightConn) Write(p []byte) (int, error) {
	if c.read.Swap(false) {
		c.r.flight()
	}
	return c.Conn.Write(p)
}

func (c *flightConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.read.Store(true)
	}
	return n, err
}
