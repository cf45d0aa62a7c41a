package notifier

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/openapitest"
	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// clock is a settable fake clock. With tick set, every reading moves it
// on by tick: transactions that read it concurrently get distinct times.
type clock struct {
	mu   sync.Mutex
	t    time.Time
	tick time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(c.tick)
	return c.t
}
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// Tick makes every reading of the clock move it on by d.
func (c *clock) Tick(d time.Duration) { c.mu.Lock(); c.tick = d; c.mu.Unlock() }

// received is one message the test SMTP server accepted.
type received struct {
	from string
	to   []string
	raw  []byte
	msg  *mail.Message
	body []byte
}

// smtpSink is a real SMTP server (go-smtp) on a loopback port that keeps
// what it receives. failNext makes the next DATA commands fail with 451.
type smtpSink struct {
	addr     string
	mu       sync.Mutex
	msgs     []received
	failNext atomic.Int32
	arrived  chan struct{}
}

func startSMTP(t *testing.T) *smtpSink {
	t.Helper()
	sink := &smtpSink{arrived: make(chan struct{}, 1024)}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &smtpSession{sink: sink}, nil }))
	srv.Domain = "localhost"
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	sink.addr = l.Addr().String()
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return sink
}

func (s *smtpSink) messages() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.msgs...)
}

type smtpSession struct {
	sink *smtpSink
	from string
	to   []string
}

func (s *smtpSession) Reset()        { s.from, s.to = "", nil }
func (s *smtpSession) Logout() error { return nil }
func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}
func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}
func (s *smtpSession) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if s.sink.failNext.Add(-1) >= 0 {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	s.sink.failNext.Store(0)
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(m.Body)
	s.sink.mu.Lock()
	s.sink.msgs = append(s.sink.msgs, received{from: s.from, to: s.to, raw: raw, msg: m, body: body})
	s.sink.mu.Unlock()
	s.sink.arrived <- struct{}{}
	return nil
}

type bundle struct {
	pool  *pgxpool.Pool
	js    jetstream.JetStream
	pub   *events.Publisher
	svc   *Service
	clock *clock
	smtp  *smtpSink
	api   string
	keys  map[string]string // "acme-admin", "acme-read", "acme-ingest", "other-admin"
	nats  *testenv.NATS
}

type options struct {
	cfg Config
	// prepare, when set, runs on the first service before it starts.
	prepare func(*Service)
}

var secret = []byte("test-unsubscribe-secret-0123456789")

func setup(t *testing.T, o options) *bundle {
	t.Helper()
	ctx := context.Background()
	n := testenv.StartNATS(t)
	nc := n.Connect(t)
	_, err := stream.Ensure(ctx, nc, stream.Config{})
	require.NoError(t, err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	pub, err := events.NewPublisher(nc)
	require.NoError(t, err)
	pool := testenv.Pool(t)
	b := &bundle{pool: pool, js: js, pub: pub, clock: &clock{t: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)}, smtp: startSMTP(t), nats: n, keys: map[string]string{}}
	keys := apikey.NewStore(pool, 0)
	for _, k := range []struct{ name, tenant, scope string }{
		{"acme-admin", "acme", apikey.ScopeAdmin}, {"acme-read", "acme", apikey.ScopeRead}, {"acme-ingest", "acme", apikey.ScopeIngest}, {"other-admin", "other", apikey.ScopeAdmin},
	} {
		_, key, err := keys.Create(ctx, apikey.CreateParams{Tenant: k.tenant, Scopes: []string{k.scope}})
		require.NoError(t, err)
		b.keys[k.name] = key
	}
	b.svc = b.startService(t, o.cfg, o.prepare)
	mux := http.NewServeMux()
	b.svc.Routes(mux)
	srv := httptest.NewServer(openapitest.Check(t, mux))
	t.Cleanup(srv.Close)
	b.api = srv.URL
	b.svc.cfg.Digest.PublicURL = srv.URL
	b.svc.digests.cfg.PublicURL = srv.URL
	b.svc.api.digest.PublicURL = srv.URL
	return b
}

// startService runs one more notifier Service (a replica) on the bundle's
// database and NATS server; prepare (when not nil) runs on it before it
// starts.
func (b *bundle) startService(t *testing.T, cfg Config, prepare func(*Service)) *Service {
	t.Helper()
	ctx := context.Background()
	mailer, err := NewSMTPMailer("smtp://"+b.smtp.addr, 10*time.Second)
	require.NoError(t, err)
	cfg.Now = b.clock.Now
	cfg.Mailer = mailer
	cfg.DigestEvery = time.Hour // tests drive the scheduler
	cfg.Digest.From = "eventline <notify@example.com>"
	cfg.Digest.Secret = secret
	cfg.Digest.PublicURL = "http://unsubscribe.invalid"
	cfg.Digest.Mailto = "unsubscribe@example.com"
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 50 * time.Millisecond
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	// The admin provisions the durable (eventline migrate); the service
	// runs as the notifier's own NATS identity.
	d := cfg.withDefaults()
	_, err = EnsureConsumer(ctx, b.js, d.Consumer, d.MaxDeliver, d.PinnedTTL)
	require.NoError(t, err)
	njs, err := jetstream.New(b.nats.ConnectAs(t, natsauth.Notifier))
	require.NoError(t, err)
	svc, err := NewService(ctx, b.nats.ConnectAs(t, natsauth.Notifier), njs, b.pool, apikey.NewStore(b.pool, 0), cfg, NewMetrics(prometheus.NewRegistry()), log)
	require.NoError(t, err)
	if prepare != nil {
		prepare(svc)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	t.Cleanup(func() { stop(); require.NoError(t, <-done) })
	select {
	case <-svc.Hub().Listening():
	case <-time.After(10 * time.Second):
		t.Fatal("hub not listening")
	}
	return svc
}

// call sends a JSON request with the named key and decodes the answer.
func (b *bundle) call(t *testing.T, key, method, path string, body any) (int, map[string]any) {
	t.Helper()
	raw, ok := body.([]byte)
	if !ok && body != nil {
		var err error
		raw, err = json.Marshal(body)
		require.NoError(t, err)
	}
	code, _, out := b.request(t, method, path, map[string]string{"Authorization": "Bearer " + b.keys[key], "Content-Type": "application/json"}, raw)
	return code, out
}

// request sends method path with the given headers (a bearer header or an
// Origin) and body, and returns status, headers and the decoded body.
func (b *bundle) request(t *testing.T, method, path string, header map[string]string, body []byte) (int, http.Header, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, b.api+path, rd)
	require.NoError(t, err)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 {
		require.NoError(t, json.Unmarshal(raw, &out), "%s", raw)
	}
	return resp.StatusCode, resp.Header, out
}

// post sends a POST without a body with the named key and returns the
// status; unlike call it never stops the test, so goroutines may use it.
func (b *bundle) post(key, path string) (int, error) {
	req, err := http.NewRequest("POST", b.api+path, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+b.keys[key])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func (b *bundle) watch(t *testing.T, tenant, typ, id, user string) {
	t.Helper()
	code, body := b.call(t, tenant+"-admin", "PUT", "/v1/watches/"+typ+"/"+id+"/users/"+user, nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
}

// ev is a short way to write an event.
func ev(id, typ, action, creator string, particulars string, parents ...events.Ref) events.Event {
	e := events.Event{ID: id, Tenant: "acme", Action: action, Eventable: events.Ref{Type: typ, ID: id}, Creator: events.Ref{Type: "user", ID: creator}, Parents: parents}
	if particulars != "" {
		e.Particulars = json.RawMessage(particulars)
	}
	return e
}

// publish appends events and waits until the notifier has processed all
// events appended so far.
func (b *bundle) publish(t *testing.T, es ...events.Event) {
	t.Helper()
	_, err := b.pub.AppendBatch(context.Background(), es)
	require.NoError(t, err)
	b.waitProcessed(t)
}

// lastSeq is the sequence of the last message in the stream.
func (b *bundle) lastSeq(t *testing.T) uint64 {
	t.Helper()
	ctx := context.Background()
	str, err := b.js.Stream(ctx, events.StreamName)
	require.NoError(t, err)
	si, err := str.Info(ctx)
	require.NoError(t, err)
	return si.State.LastSeq
}

// appendConcurrently appends the batches (an atomic append each) from
// appenders goroutines and returns the sequence of every event id.
func (b *bundle) appendConcurrently(t *testing.T, batches [][]events.Event, appenders int) map[string]uint64 {
	t.Helper()
	work := make(chan []events.Event)
	var mu sync.Mutex
	seqs := map[string]uint64{}
	var wg sync.WaitGroup
	for range appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for batch := range work {
				res, err := b.pub.AppendBatch(context.Background(), batch)
				if err != nil {
					t.Errorf("append: %v", err)
					continue
				}
				mu.Lock()
				for _, r := range res {
					seqs[r.ID] = r.Seq
				}
				mu.Unlock()
			}
		}()
	}
	for _, batch := range batches {
		work <- batch
	}
	close(work)
	wg.Wait()
	return seqs
}

// waitProcessed waits until the notifier's durable has acked every
// message in the stream (an ack follows the commit of its effects).
func (b *bundle) waitProcessed(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	last := b.lastSeq(t)
	testenv.Poll(t, 20*time.Second, "notifier caught up", func() bool {
		c, err := b.js.Consumer(ctx, events.StreamName, DefaultConsumer)
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.AckFloor.Stream >= last && info.NumAckPending == 0
	})
}

// unread returns user -> unread_count of the group in tenant.
func (b *bundle) unread(t *testing.T, tenant string, group events.Ref) map[string]int {
	t.Helper()
	rows, err := b.pool.Query(context.Background(), `SELECT user_id, unread_count FROM notify.notifications
		WHERE tenant = $1 AND group_type = $2 AND group_id = $3`, tenant, group.Type, group.ID)
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var u string
		var n int
		require.NoError(t, rows.Scan(&u, &n))
		out[u] = n
	}
	require.NoError(t, rows.Err())
	return out
}

func (b *bundle) setPrefs(t *testing.T, user, email, digest, tz string) {
	t.Helper()
	code, body := b.call(t, "acme-ingest", "PUT", "/v1/users/"+user+"/preferences", map[string]any{"email": email, "digest": digest, "timezone": tz})
	require.Equal(t, http.StatusOK, code, "%v", body)
}

func waitMail(t *testing.T, s *smtpSink, n int) []received {
	t.Helper()
	testenv.Poll(t, 10*time.Second, fmt.Sprintf("%d mails", n), func() bool { return len(s.messages()) >= n })
	return s.messages()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func newServer(t *testing.T, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}
