package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventline/eventline/internal/consumerlag"
	"github.com/eventline/eventline/internal/deadletter"
	"github.com/eventline/eventline/internal/httpapi"
	"github.com/eventline/eventline/internal/projector"
	"github.com/eventline/eventline/internal/replay"
	"github.com/eventline/eventline/pkg/events"
)

// data answers the console's JSON API.
type data struct {
	cfg     Config
	pool    *pgxpool.Pool
	letters *deadletter.Store
	tl      *projector.Store
	client  *http.Client
}

func newData(cfg Config) *data {
	if cfg.Stream == "" {
		cfg.Stream = events.StreamName
	}
	return &data{cfg: cfg, pool: cfg.Pool, letters: deadletter.NewStore(cfg.Pool), tl: projector.NewStore(cfg.Pool),
		client: &http.Client{Timeout: 2 * time.Second}}
}

func (d *data) fail(w http.ResponseWriter, r *http.Request, err error) {
	d.cfg.Log.ErrorContext(r.Context(), "console", "path", r.URL.Path, "error", err)
	httpapi.Unavailable(w, time.Second, "could not read that right now: "+err.Error())
}

func decode(w http.ResponseWriter, r *http.Request, dst any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		httpapi.ValidationFailed(w, "the body is not a valid JSON object of this endpoint", []events.FieldError{{Field: "body", Message: err.Error()}})
		return false
	}
	return true
}

// StreamView is the events stream's state.
type StreamView struct {
	Name     string    `json:"name"`
	Messages uint64    `json:"messages"`
	Bytes    uint64    `json:"bytes"`
	FirstSeq uint64    `json:"first_seq"`
	LastSeq  uint64    `json:"last_seq"`
	LastTime time.Time `json:"last_time"`
	Replicas int       `json:"replicas"`
}

// ConsumerView is one durable's lag.
type ConsumerView struct {
	Name          string  `json:"name"`
	Pending       uint64  `json:"pending"` // num_pending + num_ack_pending, what autoscaling reads
	AckPending    int     `json:"ack_pending"`
	Redelivered   int     `json:"redelivered"`
	AckFloor      uint64  `json:"ack_floor"`
	BehindSeconds float64 `json:"behind_seconds"`
	DeadLetters   int     `json:"dead_letters"` // pending
	Error         string  `json:"error,omitempty"`
}

// ServiceView is one service's readiness.
type ServiceView struct {
	Name   string `json:"name"`
	Ready  bool   `json:"ready"`
	Detail string `json:"detail"`
}

// TenantCount counts one tenant's rejected events.
type TenantCount struct {
	Tenant  string `json:"tenant"`
	Pending int    `json:"pending"`
	Total   int    `json:"total"`
}

// Overview is the console's front page.
type Overview struct {
	At          time.Time      `json:"at"`
	Stream      *StreamView    `json:"stream"`
	StreamError string         `json:"stream_error,omitempty"`
	Consumers   []ConsumerView `json:"consumers"`
	Services    []ServiceView  `json:"services"`
	Rejected    []TenantCount  `json:"rejected"`
}

func (d *data) overview(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := ctxTimeout(r.Context())
	defer cancel()
	o := Overview{At: d.cfg.Now().UTC(), Consumers: []ConsumerView{}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); o.Services = d.readiness(ctx) }()
	letters, err := d.pendingLetters(ctx)
	if err != nil {
		wg.Wait()
		d.fail(w, r, err)
		return
	}
	if o.Rejected, err = d.rejectedCounts(ctx); err != nil {
		wg.Wait()
		d.fail(w, r, err)
		return
	}
	str, err := d.cfg.JS.Stream(ctx, d.cfg.Stream)
	if err == nil {
		o.Stream, o.Consumers, err = d.streamState(ctx, str, letters)
	}
	if err != nil {
		o.StreamError = err.Error()
	}
	wg.Wait()
	httpapi.JSON(w, http.StatusOK, o)
}

// streamState reads the stream and measures every durable's lag
// (consumerlag.Measure, what the services export as metrics).
func (d *data) streamState(ctx context.Context, str jetstream.Stream, letters map[string]int) (*StreamView, []ConsumerView, error) {
	info, err := str.Info(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("stream info: %w", err)
	}
	sv := &StreamView{Name: info.Config.Name, Messages: info.State.Msgs, Bytes: info.State.Bytes, FirstSeq: info.State.FirstSeq,
		LastSeq: info.State.LastSeq, LastTime: info.State.LastTime, Replicas: info.Config.Replicas}
	out := []ConsumerView{}
	names := str.ConsumerNames(ctx)
	for name := range names.Name() {
		cv := ConsumerView{Name: name, DeadLetters: letters[name]}
		cons, err := str.Consumer(ctx, name)
		if err == nil {
			var l consumerlag.Lag
			if l, err = consumerlag.Measure(ctx, cons, str, d.cfg.Now()); err == nil {
				ci := cons.CachedInfo()
				cv.Pending, cv.BehindSeconds = l.Pending, l.Behind.Seconds()
				cv.AckPending, cv.Redelivered, cv.AckFloor = ci.NumAckPending, ci.NumRedelivered, ci.AckFloor.Stream
			}
		}
		if err != nil {
			cv.Error = err.Error()
		}
		out = append(out, cv)
	}
	if err := names.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		return sv, out, fmt.Errorf("list consumers: %w", err)
	}
	return sv, out, nil
}

// readiness asks every service's /readyz at once.
func (d *data) readiness(ctx context.Context) []ServiceView {
	out := make([]ServiceView, len(d.cfg.Services))
	var wg sync.WaitGroup
	for i, s := range d.cfg.Services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = ServiceView{Name: s.Name}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.ReadyURL, nil)
			if err != nil {
				out[i].Detail = err.Error()
				return
			}
			resp, err := d.client.Do(req)
			if err != nil {
				out[i].Detail = err.Error()
				return
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
			out[i].Ready = resp.StatusCode == http.StatusOK
			out[i].Detail = strings.TrimSpace(string(body))
		}()
	}
	wg.Wait()
	return out
}

func (d *data) pendingLetters(ctx context.Context) (map[string]int, error) {
	rows, err := d.pool.Query(ctx, `SELECT consumer, count(*) FROM eventline.dead_letters WHERE replayed_at IS NULL GROUP BY consumer`)
	if err != nil {
		return nil, fmt.Errorf("count dead letters: %w", err)
	}
	out := map[string]int{}
	var name string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&name, &n}, func() error { out[name] = n; return nil })
	return out, err
}

func (d *data) rejectedCounts(ctx context.Context) ([]TenantCount, error) {
	rows, err := d.pool.Query(ctx, `SELECT coalesce(tenant, ''), count(*) FILTER (WHERE replayed_at IS NULL), count(*)
		FROM eventline.rejected_events GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 200`)
	if err != nil {
		return nil, fmt.Errorf("count rejected events: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (TenantCount, error) {
		var t TenantCount
		return t, r.Scan(&t.Tenant, &t.Pending, &t.Total)
	})
	if out == nil {
		out = []TenantCount{}
	}
	return out, err
}

// LetterView is a dead letter as the console shows it: the body as text
// (clipped), not base64.
type LetterView struct {
	Consumer   string     `json:"consumer"`
	Seq        uint64     `json:"seq"`
	Subject    string     `json:"subject"`
	Tenant     string     `json:"tenant"`
	Reason     string     `json:"reason"`
	Failures   int        `json:"failures"`
	FailedAt   time.Time  `json:"failed_at"`
	ReplayedAt *time.Time `json:"replayed_at"`
	Body       string     `json:"body"`
}

func letterView(l deadletter.Letter) LetterView {
	return LetterView{Consumer: l.Consumer, Seq: l.StreamSeq, Subject: l.Subject, Tenant: deadletter.SubjectTenant(l.Subject), Reason: l.Error,
		Failures: l.Failures, FailedAt: l.FailedAt, ReplayedAt: l.ReplayedAt, Body: clip(l.Data, 2048)}
}

// clip returns at most n bytes of b as text, marking invalid UTF-8.
func clip(b []byte, n int) string {
	s := strings.ToValidUTF8(string(b[:min(len(b), n)]), "\uFFFD")
	if len(b) > n {
		for len(s) > 0 && !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		s += "…"
	}
	return s
}

func (d *data) deadLetters(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := ctxTimeout(r.Context())
	defer cancel()
	q := r.URL.Query()
	ls, err := d.letters.List(ctx, deadletter.ListParams{Consumer: q.Get("consumer"), IncludeReplayed: q.Get("all") == "1", Limit: 500})
	if err != nil {
		d.fail(w, r, err)
		return
	}
	out := make([]LetterView, 0, len(ls))
	for i := len(ls) - 1; i >= 0; i-- { // newest failure first
		out = append(out, letterView(ls[i]))
	}
	httpapi.JSON(w, http.StatusOK, map[string]any{"dead_letters": out})
}

// replay processes one dead letter again (replay.Letter, as `eventline
// dlq replay` does) and answers whether it is replayed or why it still
// fails.
func (d *data) replay(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Consumer string `json:"consumer"`
		Seq      uint64 `json:"seq"`
	}
	if !decode(w, r, &in) {
		return
	}
	if _, ok := replay.For(in.Consumer); !ok {
		httpapi.ValidationFailed(w, "no such consumer", []events.FieldError{{Field: "consumer", Message: "must be one of " + strings.Join(replay.Consumers(), ", ")}})
		return
	}
	ctx, cancel := ctxTimeout(r.Context())
	defer cancel()
	l, err := d.letters.Get(ctx, in.Consumer, in.Seq)
	if err != nil {
		httpapi.Error(w, http.StatusNotFound, err.Error())
		return
	}
	poison, err := replay.Letter(ctx, d.pool, l)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	if poison != nil {
		d.cfg.Log.WarnContext(ctx, "console: dead letter still fails", "consumer", l.Consumer, "seq", l.StreamSeq, "error", poison)
		httpapi.JSON(w, http.StatusOK, map[string]any{"replayed": false, "reason": poison.Error()})
		return
	}
	d.cfg.Log.InfoContext(ctx, "console: dead letter replayed", "consumer", l.Consumer, "seq", l.StreamSeq)
	httpapi.JSON(w, http.StatusOK, map[string]any{"replayed": true})
}

// RejectionView is a rejected event as the console shows it.
type RejectionView struct {
	Seq        uint64              `json:"seq"`
	Tenant     string              `json:"tenant"`
	Subject    string              `json:"subject"`
	ID         *string             `json:"id"`
	Errors     []events.FieldError `json:"errors"`
	Reason     string              `json:"reason"`
	StreamTime time.Time           `json:"stream_time"`
	ReplayedAt *time.Time          `json:"replayed_at"`
	Body       string              `json:"body"`
}

func (d *data) rejected(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := ctxTimeout(r.Context())
	defer cancel()
	q := r.URL.Query()
	rs, err := d.letters.Rejections(ctx, deadletter.RejectionsParams{Tenant: q.Get("tenant"), IncludeReplayed: q.Get("all") == "1", Limit: 500})
	if err != nil {
		d.fail(w, r, err)
		return
	}
	out := make([]RejectionView, 0, len(rs))
	for i := len(rs) - 1; i >= 0; i-- { // newest first
		x := rs[i]
		out = append(out, RejectionView{Seq: x.Seq, Tenant: x.Tenant, Subject: x.Subject, ID: x.ID, Errors: x.Errors, Reason: deadletter.Reason(x.Errors),
			StreamTime: x.StreamTime, ReplayedAt: x.ReplayedAt, Body: clip(x.Body, 2048)})
	}
	httpapi.JSON(w, http.StatusOK, map[string]any{"rejected_events": out})
}

// EndpointView is a webhook endpoint with its health over the last day.
type EndpointView struct {
	Tenant              string     `json:"tenant"`
	ID                  string     `json:"id"`
	URL                 string     `json:"url"`
	Events              []string   `json:"events"`
	Enabled             bool       `json:"enabled"`
	DisabledReason      string     `json:"disabled_reason,omitempty"`
	ConsecutiveFailures int        `json:"consecutive_failures"`
	FailingSince        *time.Time `json:"failing_since"`
	Succeeded           int        `json:"succeeded_24h"`
	Failed              int        `json:"failed_24h"`
	Pending             int        `json:"pending_24h"`
	LastAttemptAt       *time.Time `json:"last_attempt_at"`
	Health              string     `json:"health"` // healthy, failing, disabled, idle
}

// idAt is the smallest UUIDv7 made at t: delivery ids are UUIDv7, so
// "id >= idAt(t)" selects those created since t on the primary key.
func idAt(t time.Time) string {
	ms := uint64(t.UnixMilli())
	return fmt.Sprintf("%08x-%04x-0000-0000-000000000000", ms>>16, ms&0xffff)
}

func (d *data) endpoints(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := ctxTimeout(r.Context())
	defer cancel()
	rows, err := d.pool.Query(ctx, `SELECT e.tenant, e.id, e.url, e.events, e.enabled, coalesce(e.disabled_reason, ''), e.consecutive_failures, e.failing_since,
			count(d.id) FILTER (WHERE d.status = 'succeeded'), count(d.id) FILTER (WHERE d.status = 'failed'),
			count(d.id) FILTER (WHERE d.status = 'pending'), max(d.last_attempt_at)
		FROM webhook.endpoints e
		LEFT JOIN webhook.deliveries d ON d.tenant = e.tenant AND d.endpoint_id = e.id AND d.id >= $2
		WHERE e.deleted_at IS NULL AND ($1 = '' OR e.tenant = $1)
		GROUP BY e.tenant, e.id ORDER BY e.tenant, e.id LIMIT 500`, r.URL.Query().Get("tenant"), idAt(d.cfg.Now().Add(-24*time.Hour)))
	if err != nil {
		d.fail(w, r, fmt.Errorf("list endpoints: %w", err))
		return
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (EndpointView, error) {
		var e EndpointView
		err := row.Scan(&e.Tenant, &e.ID, &e.URL, &e.Events, &e.Enabled, &e.DisabledReason, &e.ConsecutiveFailures, &e.FailingSince,
			&e.Succeeded, &e.Failed, &e.Pending, &e.LastAttemptAt)
		switch {
		case !e.Enabled:
			e.Health = "disabled"
		case e.ConsecutiveFailures > 0:
			e.Health = "failing"
		case e.Succeeded+e.Failed+e.Pending == 0:
			e.Health = "idle"
		default:
			e.Health = "healthy"
		}
		return e, err
	})
	if err != nil {
		d.fail(w, r, fmt.Errorf("list endpoints: %w", err))
		return
	}
	if out == nil {
		out = []EndpointView{}
	}
	httpapi.JSON(w, http.StatusOK, map[string]any{"endpoints": out})
}

// DeliveryView is one line of the delivery log with its last attempt.
type DeliveryView struct {
	ID            string     `json:"id"`
	Tenant        string     `json:"tenant"`
	EndpointID    string     `json:"endpoint_id"`
	URL           string     `json:"url"`
	EventID       string     `json:"event_id"`
	EventSeq      int64      `json:"event_seq"`
	EventType     string     `json:"event_type"`
	Status        string     `json:"status"`
	Attempts      int        `json:"attempts"`
	NextAttemptAt *time.Time `json:"next_attempt_at"`
	CreatedAt     time.Time  `json:"created_at"`
	LastCode      int        `json:"last_status_code,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	LastDuration  int        `json:"last_duration_ms,omitempty"`
}

func (d *data) deliveries(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	status := q.Get("status")
	if status != "" && status != "pending" && status != "succeeded" && status != "failed" {
		httpapi.ValidationFailed(w, "fix the listed parameters", []events.FieldError{{Field: "status", Message: "must be pending, succeeded or failed"}})
		return
	}
	ctx, cancel := ctxTimeout(r.Context())
	defer cancel()
	rows, err := d.pool.Query(ctx, `SELECT d.id, d.tenant, d.endpoint_id, coalesce(e.url, ''), d.event_id, d.event_seq, d.event_type, d.status, d.attempts,
			d.next_attempt_at, d.created_at, coalesce(a.status_code, 0), coalesce(nullif(a.error_class, ''), a.error, ''), coalesce(a.duration_ms, 0)
		FROM webhook.deliveries d
		LEFT JOIN webhook.endpoints e ON e.id = d.endpoint_id
		LEFT JOIN LATERAL (SELECT status_code, error_class, error, duration_ms FROM webhook.attempts x
			WHERE x.delivery_id = d.id ORDER BY x.n DESC LIMIT 1) a ON true
		WHERE ($1 = '' OR d.tenant = $1) AND ($2 = '' OR d.endpoint_id = $2) AND ($3 = '' OR d.status = $3) AND ($4 = '' OR d.id < $4)
		ORDER BY d.id DESC LIMIT 100`, q.Get("tenant"), q.Get("endpoint"), status, q.Get("before"))
	if err != nil {
		d.fail(w, r, fmt.Errorf("list deliveries: %w", err))
		return
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (DeliveryView, error) {
		var v DeliveryView
		err := row.Scan(&v.ID, &v.Tenant, &v.EndpointID, &v.URL, &v.EventID, &v.EventSeq, &v.EventType, &v.Status, &v.Attempts,
			&v.NextAttemptAt, &v.CreatedAt, &v.LastCode, &v.LastError, &v.LastDuration)
		if v.Status != "pending" {
			v.NextAttemptAt = nil
		}
		return v, err
	})
	if err != nil {
		d.fail(w, r, fmt.Errorf("list deliveries: %w", err))
		return
	}
	if out == nil {
		out = []DeliveryView{}
	}
	var next *string
	if len(out) == 100 {
		next = &out[99].ID
	}
	httpapi.JSON(w, http.StatusOK, map[string]any{"deliveries": out, "next_before": next})
}

// timeline reads one page of a tenant's timeline (of an object when type
// and id are given, else the tenant's whole activity), as the projector's
// API would for that tenant.
func (d *data) timeline(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	tenant := q.Get("tenant")
	var errs []events.FieldError
	if !events.IsTenant(tenant) {
		errs = append(errs, events.FieldError{Field: "tenant", Message: "is required: a tenant name"})
	}
	query := projector.Query{Tenant: tenant, Limit: 50}
	typ, id := q.Get("type"), q.Get("id")
	if typ != "" || id != "" {
		obj := events.Ref{Type: typ, ID: id}
		errs = append(errs, events.CheckRef("object", obj)...)
		query.Object = &obj
	}
	if a := q.Get("action"); a != "" {
		query.Types = []string{a}
		query.Actions = []string{a}
	}
	if c := q.Get("cursor"); c != "" && len(errs) == 0 {
		if err := query.Continue(c); err != nil {
			errs = append(errs, events.FieldError{Field: "cursor", Message: err.Error()})
		}
	}
	if len(errs) > 0 {
		httpapi.ValidationFailed(w, "fix the listed parameters", errs)
		return
	}
	ctx, cancel := ctxTimeout(r.Context())
	defer cancel()
	page, err := d.tl.List(ctx, query)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	if page.Events == nil {
		page.Events = []events.Event{}
	}
	httpapi.JSON(w, http.StatusOK, page)
}

// tenants lists the tenants that have keys, endpoints or rejections.
func (d *data) tenants(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := ctxTimeout(r.Context())
	defer cancel()
	rows, err := d.pool.Query(ctx, `SELECT tenant FROM auth.api_keys UNION SELECT tenant FROM webhook.endpoints
		UNION SELECT tenant FROM eventline.rejected_events WHERE tenant IS NOT NULL ORDER BY 1 LIMIT 1000`)
	if err != nil {
		d.fail(w, r, fmt.Errorf("list tenants: %w", err))
		return
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		d.fail(w, r, fmt.Errorf("list tenants: %w", err))
		return
	}
	if out == nil {
		out = []string{}
	}
	httpapi.JSON(w, http.StatusOK, map[string]any{"tenants": out})
}
