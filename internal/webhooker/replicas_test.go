package webhooker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/safehttp"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/internal/webhooker/attempt"
	"github.com/eventline/eventline/internal/webhooker/delivery"
	"github.com/eventline/eventline/pkg/webhook"
)

// replica starts another webhooker over b's database and NATS server,
// with b's clock and keyring, until the test ends.
func (b *bundle) replica(t *testing.T, cfg Config) *Service {
	t.Helper()
	ctx := context.Background()
	client, err := safehttp.New(safehttp.Config{AllowPrivate: true, Timeout: 5 * time.Second})
	require.NoError(t, err)
	cfg.Now = b.clock.Now
	cfg.Rand = func() float64 { return 0.5 }
	cfg.ScheduleEvery = time.Hour // tests drive the scheduler
	cfg.RefreshEvery = 20 * time.Millisecond
	cfg.Secrets = b.secrets
	wjs, err := jetstream.New(b.nats.ConnectAs(t, natsauth.Webhooker))
	require.NoError(t, err)
	svc, err := NewService(ctx, b.nats.ConnectAs(t, natsauth.Webhooker), wjs, b.pool, attempt.HTTPPoster{Client: client}, nil, cfg,
		NewMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	t.Cleanup(func() { stop(); require.NoError(t, <-done) })
	return svc
}

// TestThreeReplicasShareALargeFanOut: an event to 10,000 endpoints (more
// than Config.ShareAbove), cut into chunks by the replica that took it, is
// delivered by three replicas whose schedulers take the chunks their
// dispatchers have room for: every endpoint receives it exactly once, each
// replica sends a share, and once every outcome is written no claim, due
// row or chunk is left.
func TestThreeReplicasShareALargeFanOut(t *testing.T) {
	t.Parallel()
	const endpoints = 10_000
	ctx := context.Background()
	// Room for 16 deliveries each (twice the workers): no replica can take
	// the whole fan-out at once.
	dispatch := attempt.DispatchConfig{Workers: 8}
	b := setup(t, options{allowPrivate: true, cfg: Config{UserAgent: "replica-0", Dispatch: dispatch}})
	var mu sync.Mutex
	got := map[string]int{} // endpoint path -> deliveries
	by := map[string]int{}  // replica -> deliveries
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		got[r.URL.Path]++
		by[r.UserAgent()]++
	}))
	t.Cleanup(srv.Close)
	replicas := []*Service{b.svc, b.replica(t, Config{UserAgent: "replica-1", Dispatch: dispatch}), b.replica(t, Config{UserAgent: "replica-2", Dispatch: dispatch})}

	// The endpoints, written with one COPY as the API would create them.
	rows := make([][]any, endpoints)
	ids := make([]string, endpoints)
	for i := range rows {
		ids[i] = delivery.NewID()
		secret, err := webhook.GenerateSecret()
		require.NoError(t, err)
		sealed, keyID, err := b.svc.Store().SealFirstSecret("acme", ids[i], secret)
		require.NoError(t, err)
		rows[i] = []any{"acme", ids[i], fmt.Sprintf("%s/ep/%d", srv.URL, i), []string{"*"}, "json", sealed, keyID}
	}
	_, err := b.pool.CopyFrom(ctx, pgx.Identifier{"webhook", "endpoints"},
		[]string{"tenant", "id", "url", "events", "format", "secrets_sealed", "secrets_key"}, pgx.CopyFromRows(rows))
	require.NoError(t, err)
	_, err = b.pool.Exec(ctx, `ANALYZE webhook.endpoints`)
	require.NoError(t, err)
	testenv.Poll(t, time.Minute, "every replica's registry has every endpoint", func() bool {
		for _, s := range replicas {
			for _, id := range []string{ids[0], ids[endpoints-1]} {
				if _, ok := s.registry.Get(id); !ok {
					return false
				}
			}
		}
		return true
	})

	ev := b.publish(t, "big")
	b.waitFannedOut(t, ev.Seq)
	// Every replica's scheduler in turn, until every delivery is written.
	testenv.Poll(t, 5*time.Minute, "every delivery written", func() bool {
		for _, s := range replicas {
			_, err := s.ScheduleNow(ctx)
			require.NoError(t, err)
		}
		return b.count(t, `SELECT (SELECT count(*) FROM webhook.deliveries WHERE status = 'pending') + (SELECT count(*) FROM webhook.chunks)`) == 0
	})
	mu.Lock()
	received, sent := maps.Clone(got), maps.Clone(by)
	mu.Unlock()
	require.Len(t, received, endpoints, "every endpoint received the event")
	for path, n := range received {
		require.Equal(t, 1, n, "%s received the event %d times", path, n)
	}
	for _, ua := range []string{"replica-0", "replica-1", "replica-2"} {
		require.Positive(t, sent[ua], "%s sent a share: %v", ua, sent)
	}
	require.Equal(t, endpoints, b.count(t, `SELECT count(*) FROM webhook.deliveries WHERE status = 'succeeded' AND attempts = 1`))

	// Written: every claim is let go at the next renewal.
	testenv.Poll(t, time.Minute, "no claim or due row left", func() bool {
		for _, s := range replicas {
			require.NoError(t, s.heldLeases().renew(ctx))
			_, err := s.ScheduleNow(ctx)
			require.NoError(t, err)
		}
		return b.count(t, `SELECT (SELECT count(*) FROM webhook.claims) + (SELECT count(*) FROM webhook.due) + (SELECT count(*) FROM webhook.chunks)`) == 0
	})
}
