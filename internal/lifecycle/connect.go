package lifecycle

import (
	"context"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/stream"
)

// Conns are the connections every service opens on start.
type Conns struct {
	Pool *pgxpool.Pool
	NC   *nats.Conn
}

// Connect opens Postgres and refuses an out-of-date schema, then connects
// to NATS as name and creates or updates the EVENTS stream.
func Connect(ctx context.Context, databaseURL, natsURL, name string, sc stream.Config, log *slog.Logger) (*Conns, error) {
	pool, err := postgres.Open(ctx, databaseURL)
	if err != nil {
		return nil, err
	}
	if err := postgres.CheckSchema(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	nc, err := stream.Connect(natsURL, name, log)
	if err != nil {
		pool.Close()
		return nil, err
	}
	if _, err := stream.Ensure(ctx, nc, sc); err != nil {
		nc.Close()
		pool.Close()
		return nil, err
	}
	return &Conns{Pool: pool, NC: nc}, nil
}

// Close closes both connections.
func (c *Conns) Close() {
	c.NC.Close()
	c.Pool.Close()
}
