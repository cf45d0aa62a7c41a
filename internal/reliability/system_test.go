//go:build reliability

package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const tenant = "rel"

// services are the binaries a system runs, in start order.
var services = []string{"ingest", "projector", "notifier", "webhooker"}

// systemConfig says where the services find NATS and Postgres; the
// harness itself always uses the direct addresses.
type systemConfig struct {
	NATSURL    string // for the harness (direct)
	DBURL      string // for the harness (direct); default: a fresh testenv database
	SvcNATSURL string // for the services; default NATSURL (a toxiproxy address in network tests)
	SvcDBURL   string // for the services; default DBURL
	// NATSPasswords are the NATS identities' passwords (the server runs
	// the shipped deploy/nats/auth.conf): every service connects as its
	// own identity, the harness and eventline migrate as the admin.
	NATSPasswords map[string]string
	Env           []string
}

// system is one running eventline: ingest, projector and webhooker
// processes, a webhook endpoint with a real HTTP receiver, and the read
// models to check.
type system struct {
	t        *testing.T
	cfg      systemConfig
	pool     *pgxpool.Pool
	key      string
	receiver *receiver
	endpoint string

	mu   sync.Mutex
	svcs map[string]*testenv.Service
	env  []string

	models []ReadModel
}

func startSystem(t *testing.T, cfg systemConfig) *system {
	t.Helper()
	ctx := context.Background()
	if cfg.DBURL == "" {
		cfg.DBURL = testenv.Database(t)
	}
	if cfg.SvcNATSURL == "" {
		cfg.SvcNATSURL = cfg.NATSURL
	}
	if cfg.SvcDBURL == "" {
		cfg.SvcDBURL = cfg.DBURL
	}
	pool, err := postgres.Open(ctx, cfg.DBURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, key, err := apikey.NewStore(pool, 0).Create(ctx, apikey.CreateParams{Tenant: tenant, Scopes: []string{"ingest", "read", "admin"}})
	require.NoError(t, err)
	s := &system{t: t, cfg: cfg, pool: pool, key: key, svcs: map[string]*testenv.Service{}}
	s.env = append([]string{
		"NATS_URL=" + cfg.SvcNATSURL, "DATABASE_URL=" + cfg.SvcDBURL, "LOG_LEVEL=warn",
		"WEBHOOK_ALLOW_PRIVATE=true", "WEBHOOK_TIMEOUT=5s", "INGEST_RATE_LIMIT=0",
		"PROJECTOR_LAG_INTERVAL=1s", "SHUTDOWN_TIMEOUT=20s",
		// A SIGKILLed notifier's pin expires well before the next kill.
		"NOTIFIER_PINNED_TTL=2s",
		// One key for every (re)start: the webhooker must open what it sealed.
		"EVENTLINE_SECRET_KEY=" + testenv.SecretKey,
	}, cfg.Env...)
	// The stream and the durables, provisioned as the NATS admin with the
	// system's settings (STREAM_REPLICAS, PROJECTOR_ACK_WAIT ...).
	out, err := s.eventlineCLI(append([]string{"NATS_URL=" + cfg.NATSURL}, s.natsIdentity(natsauth.Admin)...), "migrate", "--skip-database")
	require.NoError(t, err, "eventline migrate --skip-database: %s", out)
	for _, name := range services {
		s.start(name)
	}
	for _, name := range services {
		s.svc(name).WaitReady(t)
	}
	s.receiver = newReceiver(t)
	s.endpoint = s.createEndpoint(s.receiver.url)
	s.setUpInbox()
	s.models = []ReadModel{
		timelineModel{pool: pool, tenant: tenant},
		inboxModel{pool: pool, tenant: tenant},
		deliveryModel{pool: pool, tenant: tenant, endpoint: s.endpoint},
		s.receiver,
	}
	s.warmUp()
	return s
}

// start runs (or re-runs) a service binary with the system's environment.
func (s *system) start(name string) *testenv.Service {
	s.t.Helper()
	svc := testenv.StartService(s.t, testenv.BuildBinary(s.t, "./cmd/"+name), append(s.env, s.natsIdentity(name)...)...)
	s.mu.Lock()
	s.svcs[name] = svc
	s.mu.Unlock()
	return svc
}

func (s *system) svc(name string) *testenv.Service {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.svcs[name]
}

// ingestURL is where the load posts; it changes when ingest is restarted.
func (s *system) ingestURL() string { return s.svc("ingest").URL }

// kill SIGKILLs a service and waits for it to be gone.
func (s *system) kill(name string) {
	s.t.Helper()
	svc := s.svc(name)
	require.NoError(s.t, syscall.Kill(svc.PID(), syscall.SIGKILL))
	svc.Stop(s.t) // returns once the process has exited
}

// createEndpoint registers a webhook for every event type.
func (s *system) createEndpoint(url string) string {
	s.t.Helper()
	body := fmt.Sprintf(`{"url":%q,"events":["*"],"description":"reliability receiver"}`, url)
	var out struct{ ID string }
	status := s.call(http.MethodPost, s.svc("webhooker").URL+"/v1/webhooks", body, &out)
	require.Equal(s.t, http.StatusCreated, status)
	require.NotEmpty(s.t, out.ID)
	return out.ID
}

func (s *system) call(method, url, body string, out any) int {
	s.t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(s.t, err)
	req.Header.Set("Authorization", "Bearer "+s.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(s.t, err)
	if out != nil && resp.StatusCode < 300 {
		require.NoError(s.t, json.Unmarshal(raw, out), "%s", raw)
	}
	if resp.StatusCode >= 300 {
		s.t.Logf("%s %s: %d %s", method, url, resp.StatusCode, raw)
	}
	return resp.StatusCode
}

// warmUp appends events until one reaches every read model, so the
// endpoint is known to the webhooker (its registry refreshes every 250 ms)
// before the load starts.
func (s *system) warmUp() {
	s.t.Helper()
	var tallies []ModelTally
	var err error
	deadline := time.Now().Add(30 * time.Second)
	for n := 0; ; n++ {
		id := fmt.Sprintf("warmup-%d", n)
		require.Equal(s.t, http.StatusAccepted, s.call(http.MethodPost, s.ingestURL()+"/v1/events", string(mustJSON(s.t, newEvent(id, 0))), nil))
		for range 10 {
			time.Sleep(50 * time.Millisecond)
			tallies, err = s.check(context.Background(), []string{id})
			if err == nil && lostIn(tallies) == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no warm-up event is in every read model after 30s: %+v %v\nwebhooker: %s", tallies, err, tail(s.svc("webhooker").Output(), 3000))
		}
	}
}

// check tallies every read model against acked.
func (s *system) check(ctx context.Context, acked []string) ([]ModelTally, error) {
	out := make([]ModelTally, 0, len(s.models))
	for _, m := range s.models {
		tally, err := m.Check(ctx, acked)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.Name(), err)
		}
		tally.Model = m.Name()
		out = append(out, tally)
	}
	return out, nil
}

func lostIn(ts []ModelTally) int {
	n := 0
	for _, t := range ts {
		n += t.Lost
	}
	return n
}

// waitConverged polls the read models until none lacks an event of acked,
// and returns when that happened (zero time if not within), and when each
// model first lacked nothing.
func (s *system) waitConverged(acked []string, within time.Duration) (time.Time, map[string]time.Time) {
	s.t.Helper()
	deadline := time.Now().Add(within)
	perModel := map[string]time.Time{}
	var last []ModelTally
	var lastErr error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		began := time.Now()
		tallies, err := s.check(ctx, acked)
		cancel()
		now := time.Now()
		if err == nil {
			for _, m := range tallies {
				if _, ok := perModel[m.Model]; !ok && m.Lost == 0 {
					perModel[m.Model] = now
				}
			}
			if lostIn(tallies) == 0 {
				return now, perModel
			}
		}
		last, lastErr = tallies, err
		if os.Getenv("RELIABILITY_DEBUG") != "" {
			s.t.Logf("check took %v: %+v %v", now.Sub(began).Round(time.Millisecond), tallies, err)
		}
		time.Sleep(200 * time.Millisecond) // poll interval between full checks of the read models
	}
	s.t.Errorf("the read models did not converge within %v: %+v (last error: %v)", within, last, lastErr)
	return time.Time{}, perModel
}

// readyProbe polls /readyz of every service and records, per service,
// whether it ever answered not-ready and the last answer.
type readyProbe struct {
	mu       sync.Mutex
	notReady map[string]int // answers other than 200
	ready    map[string]int
	stop     chan struct{}
	done     chan struct{}
}

func (s *system) probeReadiness() *readyProbe {
	p := &readyProbe{notReady: map[string]int{}, ready: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: 3 * time.Second}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, name := range services {
				resp, err := client.Get(s.svc(name).AdminURL + "/readyz")
				ok := err == nil && resp.StatusCode == http.StatusOK
				if err == nil {
					_ = resp.Body.Close()
				}
				p.mu.Lock()
				if ok {
					p.ready[name]++
				} else {
					p.notReady[name]++
				}
				p.mu.Unlock()
			}
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

// reset starts a new observation window and returns the previous counts.
func (p *readyProbe) reset() (ready, notReady map[string]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ready, notReady = p.ready, p.notReady
	p.ready, p.notReady = map[string]int{}, map[string]int{}
	return ready, notReady
}

func (p *readyProbe) close() { close(p.stop); <-p.done }

// natsIdentity is the environment that makes a binary connect to NATS as
// identity.
func (s *system) natsIdentity(identity string) []string {
	return []string{"NATS_USER=" + identity, "NATS_PASSWORD=" + s.cfg.NATSPasswords[identity]}
}

// eventlineCLI runs the operator CLI against the system's database, with
// env added to the system's environment.
func (s *system) eventlineCLI(env []string, args ...string) (string, error) {
	cmd := exec.Command(testenv.BuildBinary(s.t, "./cmd/eventline"), args...)
	cmd.Env = append(append(append(os.Environ(), s.env...), env...), "DATABASE_URL="+s.cfg.DBURL)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// adminConnect connects to the NATS servers at url as the admin identity.
func adminConnect(url string, passwords map[string]string, opts ...nats.Option) (*nats.Conn, error) {
	return nats.Connect(url, append([]nats.Option{nats.UserInfo(natsauth.Admin, passwords[natsauth.Admin]),
		nats.CustomInboxPrefix(stream.InboxPrefix(natsauth.Admin))}, opts...)...)
}

// publishRaw publishes data on subject straight to NATS (as the admin),
// bypassing every validation: how a buggy producer would poison the
// stream.
func (s *system) publishRaw(subject string, data []byte) {
	s.t.Helper()
	nc, err := adminConnect(s.cfg.NATSURL, s.cfg.NATSPasswords)
	require.NoError(s.t, err)
	defer nc.Close()
	js, err := nc.JetStream()
	require.NoError(s.t, err)
	_, err = js.Publish(subject, data)
	require.NoError(s.t, err)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// tail is the end of a service's output, for failure messages.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
