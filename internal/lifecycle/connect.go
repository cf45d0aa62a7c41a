package lifecycle

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/stream"
)

// Conns are the connections every service opens on start.
type Conns struct {
	Pool *pgxpool.Pool
	NC   *nats.Conn
}

// Connect opens Postgres and refuses an out-of-date schema, then connects
// to NATS for service (connection name eventline-<service>). It does not
// create the stream: `eventline migrate` provisions it, and each service
// checks it exists.
func Connect(ctx context.Context, databaseURL string, natsClient stream.Client, service string, log *slog.Logger) (*Conns, error) {
	pool, err := postgres.Open(ctx, databaseURL)
	if err != nil {
		return nil, err
	}
	if err := postgres.CheckSchema(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	nc, err := stream.Connect(natsClient, service, "eventline-"+service, log)
	if err != nil {
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

// ConsumerConns are what a Watermill-based consumer service opens: the
// common connections, JetStream on them, and a second NATS connection for
// the Watermill subscriber alone (closing the subscriber drains it).
type ConsumerConns struct {
	*Conns
	JS         jetstream.JetStream
	ConsumerNC *nats.Conn
}

// ConnectConsumer is Connect plus the subscriber's own connection, named
// eventline-<service>-consumer.
func ConnectConsumer(ctx context.Context, databaseURL string, natsClient stream.Client, service string, log *slog.Logger) (*ConsumerConns, error) {
	conns, err := Connect(ctx, databaseURL, natsClient, service, log)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(conns.NC)
	if err != nil {
		conns.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	cnc, err := stream.Connect(natsClient, service, "eventline-"+service+"-consumer", log)
	if err != nil {
		conns.Close()
		return nil, err
	}
	return &ConsumerConns{Conns: conns, JS: js, ConsumerNC: cnc}, nil
}

// Close closes every connection.
func (c *ConsumerConns) Close() {
	c.ConsumerNC.Close()
	c.Conns.Close()
}
