package projector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

// benchEvents is the size of the pre-filled stream (PROJECTOR_BENCH_EVENTS,
// default 1,000,000): tenant acme, 100 boards, 10,000 cards, comments on
// cards, 1,000 users.
func benchEvents(b *testing.B) int {
	n := 1_000_000
	if s := os.Getenv("PROJECTOR_BENCH_EVENTS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	return n
}

func benchEvent(i int, now time.Time) events.Event {
	card := fmt.Sprintf("c%d", i%10000)
	board := events.Ref{Type: "board", ID: fmt.Sprintf("b%d", i%100)}
	e := events.Event{
		ID: fmt.Sprintf("ev%08d", i), Tenant: "acme", Creator: events.Ref{Type: "user", ID: fmt.Sprintf("u%d", i%1000)},
		Particulars: json.RawMessage(fmt.Sprintf(`{"column":"Doing","position":%d,"title":"Card number %d"}`, i%50, i%10000)),
		OccurredAt:  now.Add(time.Duration(i-10_000_000) * time.Second),
	}
	switch i % 4 {
	case 0, 1:
		e.Action, e.Eventable, e.Parents = []string{"published", "moved"}[i%4], events.Ref{Type: "card", ID: card}, []events.Ref{board}
	case 2:
		e.Action, e.Eventable, e.Parents = "created", events.Ref{Type: "comment", ID: fmt.Sprintf("m%d", i)}, []events.Ref{{Type: "card", ID: card}, board}
	default:
		e.Action, e.Eventable, e.Parents = "closed", events.Ref{Type: "card", ID: card}, []events.Ref{board}
	}
	return e
}

// BenchmarkProjection measures, on a stream pre-filled once with
// benchEvents events (nats-server process, sync_interval: always):
//   - raw-copy-events/s: the same rows written with COPY into the same schema
//     (events and timeline entries) of a fresh database: the baseline;
//   - projected-events/s: the projector binary (2 workers, batches of 500)
//     catching up from sequence 1 into a fresh database;
//   - page-p50-ms / page-p99-ms: GET /v1/timelines/board/{id} (default page
//     of 50) against the projector's API on the full table, 2,000 requests;
//   - projector-peak-rss-MiB.
//
// Run with -benchtime=Nx: each iteration is one full measurement, and the
// medians of the iterations are reported.
func BenchmarkProjection(b *testing.B) {
	n := benchEvents(b)
	proc, js, all := benchStream(b, testenv.NATSConfig{}, n)
	bin := testenv.BuildBinary(b, "./cmd/projector")

	var raw, projected, p50s, p99s, rss []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		raw = append(raw, rawCopyRate(b, all))
		rate, p50, p99, mib := projectorRun(b, js, bin, proc.Env(natsauth.Projector), n)
		projected, p50s, p99s, rss = append(projected, rate), append(p50s, p50), append(p99s, p99), append(rss, mib)
		b.Logf("run %d: raw COPY %.0f events/s, projector %.0f events/s (%.0f%%), page p50 %.2f ms p99 %.2f ms, projector peak RSS %.0f MiB",
			i+1, raw[i], rate, 100*rate/raw[i], p50, p99, mib)
	}
	b.StopTimer()
	b.ReportMetric(testenv.Median(raw), "raw-copy-events/s")
	b.ReportMetric(testenv.Median(projected), "projected-events/s")
	b.ReportMetric(testenv.Median(projected)/testenv.Median(raw), "projected/raw")
	b.ReportMetric(testenv.Median(p50s), "page-p50-ms")
	b.ReportMetric(testenv.Median(p99s), "page-p99-ms")
	b.ReportMetric(testenv.Median(rss), "projector-peak-rss-MiB")
}

// BenchmarkProjectionAuth measures what NATS authentication and
// permissions cost the projection: the same events (PROJECTOR_BENCH_EVENTS,
// default 1,000,000) in two nats-server processes, one without accounts or
// users (auth=off) and one with the shipped identities, the projector
// connecting as its own (auth=on); each iteration projects both from
// sequence 1, off then on, and the medians are reported.
func BenchmarkProjectionAuth(b *testing.B) {
	n := benchEvents(b)
	offProc, offJS, _ := benchStream(b, testenv.NATSConfig{NoAuth: true}, n)
	onProc, onJS, _ := benchStream(b, testenv.NATSConfig{}, n)
	bin := testenv.BuildBinary(b, "./cmd/projector")
	var off, on []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		offRate, _, _, _ := projectorRun(b, offJS, bin, offProc.Env(natsauth.Projector), n)
		onRate, _, _, _ := projectorRun(b, onJS, bin, onProc.Env(natsauth.Projector), n)
		off, on = append(off, offRate), append(on, onRate)
		b.Logf("run %d: projector %.0f events/s without auth, %.0f events/s with (%.1f%%)", i+1, offRate, onRate, 100*onRate/offRate)
	}
	b.StopTimer()
	b.ReportMetric(testenv.Median(off), "auth-off-events/s")
	b.ReportMetric(testenv.Median(on), "auth-on-events/s")
	b.ReportMetric(testenv.Median(on)/testenv.Median(off), "on/off")
}

// benchStream starts a nats-server process set up as c, with the stream
// provisioned and filled with n events, and returns it with an admin
// JetStream context and the events as stored.
func benchStream(b *testing.B, c testenv.NATSConfig, n int) (*testenv.NATSProcess, jetstream.JetStream, []events.Event) {
	b.Helper()
	ctx := context.Background()
	proc := testenv.StartNATSProcessWith(b, c)
	nc := proc.Connect(b)
	if _, err := stream.Ensure(ctx, nc, stream.Config{}); err != nil {
		b.Fatal(err)
	}
	pub, err := events.NewPublisher(nc)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	all := make([]events.Event, n)
	for i := range all {
		all[i] = benchEvent(i, now)
		if err := all[i].Normalize(now); err != nil {
			b.Fatal(err)
		}
	}
	fillStart := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var fillErr error
	const chunk = 1000
	next := make(chan int)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for start := range next {
				res, err := pub.AppendNormalized(ctx, all[start:min(start+chunk, n)])
				if err != nil {
					mu.Lock()
					fillErr = err
					mu.Unlock()
					continue
				}
				for j, r := range res {
					all[start+j].Seq = r.Seq
				}
			}
		}()
	}
	for start := 0; start < n; start += chunk {
		next <- start
	}
	close(next)
	wg.Wait()
	if fillErr != nil {
		b.Fatal(fillErr)
	}
	b.Logf("pre-filled %d events in %v", n, time.Since(fillStart).Round(time.Millisecond))
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	return proc, js, all
}

// rawCopyRate COPYs the events and their entries into a fresh database.
func rawCopyRate(b *testing.B, all []events.Event) float64 {
	b.Helper()
	ctx := context.Background()
	pool, err := postgres.Open(ctx, testenv.Database(b))
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	start := time.Now()
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"timeline_g1", "events"},
			[]string{"tenant", "id", "seq", "type", "action", "eventable_type", "eventable_id", "creator_type", "creator_id", "parents", "particulars", "occurred_at", "recorded_at"},
			pgx.CopyFromSlice(len(all), func(i int) ([]any, error) {
				e := all[i]
				parents, _ := json.Marshal(e.Parents)
				return []any{e.Tenant, e.ID, int64(e.Seq), e.Type, e.Action, e.Eventable.Type, e.Eventable.ID, e.Creator.Type, e.Creator.ID, string(parents), string(e.Particulars), e.OccurredAt, e.RecordedAt}, nil
			}))
		if err != nil {
			return err
		}
		var rows [][]any
		for _, e := range all {
			for _, o := range append([]events.Ref{e.Eventable}, e.Parents...) {
				rows = append(rows, []any{e.Tenant, o.Type, o.ID, e.OccurredAt, int64(e.Seq), e.ID, e.Type, e.Action, e.Eventable.Type, e.Creator.Type, e.Creator.ID})
			}
		}
		_, err = tx.CopyFrom(ctx, pgx.Identifier{"timeline_g1", "entries"},
			[]string{"tenant", "object_type", "object_id", "occurred_at", "seq", "event_id", "type", "action", "eventable_type", "creator_type", "creator_id"},
			pgx.CopyFromRows(rows))
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return float64(len(all)) / time.Since(start).Seconds()
}

// projectorRun starts the projector binary (natsEnv: its NATS settings) on
// a fresh database and a fresh durable "projector", which the admin (js)
// provisions, times its catch-up from sequence 1, then measures default
// timeline pages.
func projectorRun(b *testing.B, js jetstream.JetStream, bin string, natsEnv []string, n int) (rate, p50, p99, rssMiB float64) {
	b.Helper()
	ctx := context.Background()
	dbURL := testenv.Database(b)
	pool, err := postgres.Open(ctx, dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	_, key, err := apikey.NewStore(pool, 0).Create(ctx, apikey.CreateParams{Tenant: "acme", Scopes: []string{"read"}})
	if err != nil {
		b.Fatal(err)
	}
	consumer := DefaultConsumer // the one the projector's NATS identity may read
	if err := js.DeleteConsumer(ctx, events.StreamName, consumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		b.Fatal(err)
	}
	if _, err := EnsureConsumer(ctx, js, ConsumerConfig{}); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	svc := testenv.StartService(b, bin, append(natsEnv, "DATABASE_URL="+dbURL, "LOG_LEVEL=warn")...)
	defer svc.Stop(b)
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for ; ; <-poll.C {
		cons, err := js.Consumer(ctx, events.StreamName, consumer)
		if err == nil {
			info, err := cons.Info(ctx)
			if err == nil && info.AckFloor.Stream >= uint64(n) {
				break
			}
		}
		if time.Since(start) > 10*time.Minute {
			b.Fatalf("projector did not catch up within 10 minutes\n%s", svc.Output())
		}
	}
	rate = float64(n) / time.Since(start).Seconds()
	if rssMiB, err = svc.PeakRSSMiB(); err != nil {
		b.Fatal(err)
	}
	var got int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM timeline_g1.events").Scan(&got); err != nil || got != n {
		b.Fatalf("projected %d events, want %d (%v)", got, n, err)
	}
	if _, err := pool.Exec(ctx, "ANALYZE timeline_g1.events; ANALYZE timeline_g1.entries"); err != nil {
		b.Fatal(err)
	}
	lat := make([]float64, 0, 2000)
	client := &http.Client{}
	for i := range 2200 {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/v1/timelines/board/b%d", svc.URL, i%100), nil)
		req.Header.Set("Authorization", "Bearer "+key)
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("page: %d %s", resp.StatusCode, body)
		}
		if i >= 200 { // the first 200 warm the connection and caches
			lat = append(lat, float64(time.Since(t0))/float64(time.Millisecond))
		}
	}
	slices.Sort(lat)
	return rate, lat[len(lat)/2], lat[len(lat)*99/100], rssMiB
}
