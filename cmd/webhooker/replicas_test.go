package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

// replicas are webhooker processes of one installation: one NATS server,
// one database, one durable (docs/architecture.md "Webhooks").
type replicas struct {
	t    *testing.T
	svcs []*testenv.Service
	pool *pgxpool.Pool
	key  string
	pub  *events.Publisher
}

const replicaTenant = "acme"

// startReplicas runs n webhooker binaries with env added to their
// environment, and returns once every one is ready.
func startReplicas(t *testing.T, n int, env ...string) *replicas {
	t.Helper()
	ctx := context.Background()
	ns := testenv.StartNATS(t)
	testenv.Provision(t, ns)
	db := testenv.Database(t)
	pool, err := postgres.Open(ctx, db)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, key, err := apikey.NewStore(pool, 0).Create(ctx, apikey.CreateParams{Tenant: replicaTenant, Scopes: []string{"ingest", "read", "admin"}})
	require.NoError(t, err)
	pub, err := events.NewPublisher(ns.ConnectAs(t, natsauth.Ingest))
	require.NoError(t, err)
	r := &replicas{t: t, pool: pool, key: key, pub: pub}
	bin := testenv.BuildBinary(t, "./cmd/webhooker")
	for range n {
		// Claims of 30 s, not 8: with the whole suite running on two
		// cores a replica can be starved of CPU for several seconds, and
		// one that cannot renew for longer than its claim is a fault
		// after which a delivery may come twice (docs/contract.md §3).
		// These tests are about sharing the work without a fault.
		r.svcs = append(r.svcs, testenv.StartService(t, bin, append(append(ns.Env(natsauth.Webhooker),
			"DATABASE_URL="+db, "LOG_LEVEL=warn", "WEBHOOK_ALLOW_PRIVATE=true", "WEBHOOK_CLAIM=30s", "EVENTLINE_SECRET_KEY="+testenv.SecretKey), env...)...))
	}
	for _, s := range r.svcs {
		s.WaitReady(t)
	}
	// Registered after the services' own cleanups: runs before they stop.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for i, s := range r.svcs {
			out := s.Output()
			t.Logf("replica %d: claims ended lapsed %v, taken over %v; its output (last 8 KiB):\n%s", i,
				metric(t, s, "eventline_webhook_claims_ended_total", `how="lapsed"`), metric(t, s, "eventline_webhook_claims_ended_total", `how="taken_over"`),
				out[max(0, len(out)-8192):])
		}
	})
	return r
}

// createEndpoints registers one endpoint per body through the replicas'
// API (round robin, 8 at a time) and returns their ids in order.
func (r *replicas) createEndpoints(bodies []string) []string {
	r.t.Helper()
	ids := make([]string, len(bodies))
	errs := make(chan error, len(bodies))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			client := &http.Client{Timeout: 30 * time.Second}
			for i := range next {
				id, err := r.createEndpoint(client, r.svcs[(w+i)%len(r.svcs)].URL, bodies[i])
				if err != nil {
					errs <- err
					continue
				}
				ids[i] = id
			}
		})
	}
	for i := range bodies {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(r.t, err)
	}
	return ids
}

func (r *replicas) createEndpoint(client *http.Client, base, body string) (string, error) {
	req, err := http.NewRequest(http.MethodPost, base+"/v1/webhooks", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+r.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		ID     string
		Detail string
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("POST /v1/webhooks %s: %d, body: %w", body, resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("POST /v1/webhooks %s: %d %s", body, resp.StatusCode, out.Detail)
	}
	return out.ID, nil
}

// waitRegistries waits until every replica's registry holds n endpoints
// (the eventline_webhook_endpoints gauge): an event appended afterwards
// is matched against all of them whichever replica takes it.
func (r *replicas) waitRegistries(n int) {
	r.t.Helper()
	for i, s := range r.svcs {
		testenv.Poll(r.t, 60*time.Second, fmt.Sprintf("replica %d's registry holds %d endpoints", i, n), func() bool {
			return metric(r.t, s, "eventline_webhook_endpoints", "") >= float64(n)
		})
	}
}

// sent is how many attempts each replica made (its
// eventline_webhook_attempts_total, every outcome).
func (r *replicas) sent() []float64 {
	out := make([]float64, len(r.svcs))
	for i, s := range r.svcs {
		out[i] = metric(r.t, s, "eventline_webhook_attempts_total", "")
	}
	return out
}

// metric sums the samples of the metric name on s's /metrics whose labels
// contain label ("" for all).
func metric(t *testing.T, s *testenv.Service, name, label string) float64 {
	t.Helper()
	resp, err := http.Get(s.AdminURL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') || !strings.Contains(rest, label) {
			continue
		}
		v, err := strconv.ParseFloat(rest[strings.LastIndexByte(rest, ' ')+1:], 64)
		require.NoError(t, err, "%s", line)
		sum += v
	}
	require.NoError(t, sc.Err())
	return sum
}

// receiver is a webhook receiver that records, per path, the webhook-id
// of every delivery and when it arrived.
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	got  map[string][]string    // path → webhook-ids, in arrival order
	when map[string][]time.Time // path → arrival times
	// slow is how long each answer takes (nanoseconds); 0 at once.
	slow atomic.Int64
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{got: map[string][]string{}, when: map[string][]time.Time{}}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rc.mu.Lock()
		rc.got[req.URL.Path] = append(rc.got[req.URL.Path], req.Header.Get("webhook-id"))
		rc.when[req.URL.Path] = append(rc.when[req.URL.Path], time.Now())
		rc.mu.Unlock()
		time.Sleep(time.Duration(rc.slow.Load())) // an endpoint that takes a while to answer
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rc.Close)
	return rc
}

// paths is how many paths have received at least one delivery.
func (rc *receiver) paths() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.got)
}

// times is when path received each delivery.
func (rc *receiver) times(path string) []time.Time {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.when[path])
}

func (rc *receiver) ids(path string) []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got[path])
}

func cardEvent(id, card string, parents ...events.Ref) events.Event {
	return events.Event{ID: id, Tenant: replicaTenant, Action: "closed", Eventable: events.Ref{Type: "card", ID: card},
		Creator: events.Ref{Type: "user", ID: "u7"}, Parents: parents}
}

// TestThreeReplicasParentFilter: an endpoint with parents receives the
// events whose eventable or one of whose parents is among them, and no
// other (docs/contract.md "Webhooks").
func TestThreeReplicasParentFilter(t *testing.T) {
	t.Parallel()
	r := startReplicas(t, 3)
	rc := newReceiver(t)
	r.createEndpoints([]string{
		fmt.Sprintf(`{"url":"%s/board-b1","events":["*"],"parents":[{"type":"board","id":"b1"}]}`, rc.URL),
		fmt.Sprintf(`{"url":"%s/card-c9","events":["*"],"parents":[{"type":"card","id":"c9"}]}`, rc.URL),
		fmt.Sprintf(`{"url":"%s/two","events":["card.closed"],"parents":[{"type":"board","id":"b2"},{"type":"board","id":"b3"}]}`, rc.URL),
		fmt.Sprintf(`{"url":"%s/all","events":["*"]}`, rc.URL),
	})
	r.waitRegistries(4)
	b := func(id string) events.Ref { return events.Ref{Type: "board", ID: id} }
	comment := events.Event{ID: "comment-on-c9", Tenant: replicaTenant, Action: "created", Eventable: events.Ref{Type: "comment", ID: "m1"},
		Creator: events.Ref{Type: "user", ID: "u7"}, Parents: []events.Ref{{Type: "card", ID: "c9"}, b("b2")}}
	for _, ev := range []events.Event{
		cardEvent("in-b1", "c1", b("b1")),                  // board-b1, all
		cardEvent("c9-itself", "c9"),                       // card-c9 (the eventable), all
		comment,                                            // card-c9 (a parent), all; not two: type
		cardEvent("in-b3", "c2", b("b3")),                  // two, all
		cardEvent("nearest-is-b4", "c3", b("b4"), b("b1")), // board-b1 (a farther parent), all
		cardEvent("in-b5", "c4", b("b5")),                  // all
		cardEvent("no-parents", "c5"),                      // all
	} {
		_, err := r.pub.Append(context.Background(), ev)
		require.NoError(t, err)
	}
	want := map[string][]string{
		"/board-b1": {"in-b1", "nearest-is-b4"},
		"/card-c9":  {"c9-itself", "comment-on-c9"},
		"/two":      {"in-b3"},
		"/all":      {"c9-itself", "comment-on-c9", "in-b1", "in-b3", "in-b5", "nearest-is-b4", "no-parents"},
	}
	testenv.Poll(t, time.Minute, "the catch-all endpoint received every event", func() bool { return len(rc.ids("/all")) >= 7 })
	// Every event reached /all; the others' deliveries were made by then
	// or are recorded: wait until no delivery is pending.
	testenv.Poll(t, 30*time.Second, "no delivery pending", func() bool {
		var pending int
		require.NoError(t, r.pool.QueryRow(context.Background(), `SELECT count(*) FROM webhook.deliveries WHERE status <> 'succeeded'`).Scan(&pending))
		return pending == 0
	})
	for path, ids := range want {
		got := rc.ids(path)
		slices.Sort(got)
		require.Equal(t, ids, got, "deliveries to %s", path)
	}
}
