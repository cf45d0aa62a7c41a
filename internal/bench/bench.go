// Package bench is `eventline bench`: the whole pipeline under load. It
// posts events through ingest at a fixed rate while the projector, the
// notifier and the webhooker consume, and measures, per event, the time
// from ingest's 202 to (a) the event being readable in the activity
// timeline and (b) its first webhook attempt reaching a local receiver.
// A second phase posts batches as fast as ingest takes them and reports
// events/s and how long the consumers take to catch up.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventline/eventline/internal/dev"
)

// Options configure a run.
type Options struct {
	IngestURL, ProjectorURL, WebhookerURL string // base URLs; one URL for all under `eventline dev`
	Key                                   string // ingest, read and admin scopes
	Rate                                  int    // events/s in the latency phase; default 1000
	Duration                              time.Duration
	Warmup                                time.Duration // not measured; default 3s
	Workers                               int           // concurrent single-event requests; default 64
	Poll                                  time.Duration // timeline poll interval; default 2ms
	Burst                                 time.Duration // the max-throughput phase; 0 skips it
	ReceiverAddr                          string        // where the local webhook receiver listens; default 127.0.0.1:0
	ReceiverURL                           string        // the URL the webhooker should call; default http://ReceiverAddr
	// Window, when set, is called as the measured window of the latency
	// phase opens (true) and closes (false), before the wait for the
	// stragglers: `eventline bench efficiency` samples CPU time there.
	Window func(open bool)
	// NoTimeline leaves the timeline unread: the pipeline does only its
	// own work (a read of the newest page costs more than an event), and
	// ToTimeline stays empty. `eventline bench efficiency` measures CPU so.
	NoTimeline bool
}

// Latency summarises one latency distribution.
type Latency struct {
	N                  int
	P50, P90, P99, Max time.Duration
	Missing            int // acknowledged but never observed within the wait
}

// Result is what a run measured.
type Result struct {
	Rate           int     // target events/s
	Achieved       float64 // acknowledged events/s during the measured window
	Acked          int
	Errors         int
	AckLatency     Latency // request sent → 202
	ToTimeline     Latency // 202 → readable in /v1/activity
	ToWebhook      Latency // 202 → first attempt at the receiver
	PollInterval   time.Duration
	BurstEvents    int
	BurstPerSecond float64
	BurstCatchUp   time.Duration // end of burst → last burst event in the timeline and at the receiver
	Polls          int           // timeline reads during the measured window (each costs the projector and Postgres)
}

type tracker struct {
	mu        sync.Mutex
	acked     map[string]time.Time // event id → 202 received
	sent      map[string]time.Time
	timeline  map[string]time.Time
	webhook   map[string]time.Time
	measuring atomic.Bool
	polls     atomic.Int64 // timeline reads while measuring
}

func newTracker() *tracker {
	return &tracker{acked: map[string]time.Time{}, sent: map[string]time.Time{}, timeline: map[string]time.Time{}, webhook: map[string]time.Time{}}
}

func (t *tracker) seen(m map[string]time.Time, id string, at time.Time) {
	t.mu.Lock()
	if _, ok := m[id]; !ok {
		m[id] = at
	}
	t.mu.Unlock()
}

// Run measures the pipeline behind the URLs.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Rate <= 0 {
		o.Rate = 1000
	}
	if o.Duration <= 0 {
		o.Duration = 30 * time.Second
	}
	if o.Warmup <= 0 {
		o.Warmup = 3 * time.Second
	}
	if o.Workers <= 0 {
		o.Workers = 64
	}
	if o.Poll <= 0 {
		o.Poll = 2 * time.Millisecond
	}
	if o.ReceiverAddr == "" {
		o.ReceiverAddr = "127.0.0.1:0"
	}
	c := &client{key: o.Key, http: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.Workers + 8}, Timeout: 30 * time.Second}}
	tr := newTracker()

	// The local webhook receiver.
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", o.ReceiverAddr)
	if err != nil {
		return Result{}, fmt.Errorf("webhook receiver: %w", err)
	}
	rsrv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		_, _ = io.Copy(io.Discard, r.Body)
		if id := r.Header.Get("webhook-id"); id != "" {
			tr.seen(tr.webhook, id, now)
		}
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = rsrv.Serve(l) }()
	defer rsrv.Close()
	if o.ReceiverURL == "" {
		o.ReceiverURL = "http://" + l.Addr().String()
	}
	var ep struct {
		ID string `json:"id"`
	}
	if err := c.do(ctx, http.MethodPost, o.WebhookerURL+"/v1/webhooks", map[string]any{
		"url": o.ReceiverURL, "events": []string{"*"}, "description": "eventline bench receiver",
	}, http.StatusCreated, &ep); err != nil {
		return Result{}, fmt.Errorf("register the bench webhook endpoint: %w", err)
	}
	defer func() {
		_ = c.do(context.WithoutCancel(ctx), http.MethodDelete, o.WebhookerURL+"/v1/webhooks/"+ep.ID, nil, http.StatusNoContent, nil)
	}()
	time.Sleep(1500 * time.Millisecond) // every webhooker replica sees a new endpoint within a second

	pollCtx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	if !o.NoTimeline {
		go pollTimeline(pollCtx, c, o.ProjectorURL, o.Poll, tr)
	}

	res := Result{Rate: o.Rate, PollInterval: o.Poll}
	gen := dev.NewDemoGenerator(uint64(time.Now().UnixNano()))
	var genMu sync.Mutex
	next := func() map[string]any { genMu.Lock(); defer genMu.Unlock(); return gen.Next(1)[0] }

	// Latency phase: open-loop at Rate, one event per request.
	jobs := make(chan map[string]any, o.Rate)
	var errs atomic.Int64
	var wg sync.WaitGroup
	for range o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ev := range jobs {
				id := ev["id"].(string)
				sent := time.Now()
				err := c.do(ctx, http.MethodPost, o.IngestURL+"/v1/events", ev, http.StatusAccepted, nil)
				now := time.Now()
				if err != nil {
					errs.Add(1)
					continue
				}
				if tr.measuring.Load() {
					tr.mu.Lock()
					tr.sent[id], tr.acked[id] = sent, now
					tr.mu.Unlock()
				}
			}
		}()
	}
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	issued := 0
	measureFrom, measureTo := start.Add(o.Warmup), start.Add(o.Warmup+o.Duration)
loop:
	for now := range tick.C {
		if ctx.Err() != nil {
			break
		}
		if now.After(measureTo) {
			break
		}
		if now.After(measureFrom) && !tr.measuring.Load() {
			if o.Window != nil {
				o.Window(true)
			}
			tr.measuring.Store(true)
		}
		due := int(float64(now.Sub(start)) / float64(time.Second) * float64(o.Rate))
		for ; issued < due; issued++ {
			select {
			case jobs <- next():
			default: // the workers cannot keep up: the rate is not achieved, and the result says so
				issued = due
				continue loop
			}
		}
	}
	tick.Stop()
	if tr.measuring.Swap(false) && o.Window != nil {
		o.Window(false)
	}
	close(jobs)
	wg.Wait()
	res.Errors = int(errs.Load())
	res.Polls = int(tr.polls.Load())

	// Wait until every acknowledged event is observed, or 30s pass.
	waitSeen(ctx, tr, !o.NoTimeline, 30*time.Second)
	tr.mu.Lock()
	res.Acked = len(tr.acked)
	res.Achieved = float64(len(tr.acked)) / o.Duration.Seconds()
	res.AckLatency = latencies(tr.acked, tr.sent, tr.acked)
	res.ToTimeline = latencies(tr.acked, tr.acked, tr.timeline)
	res.ToWebhook = latencies(tr.acked, tr.acked, tr.webhook)
	tr.mu.Unlock()

	if o.Burst > 0 {
		if err := burst(ctx, c, o, gen, tr, &res); err != nil {
			return res, err
		}
	}
	return res, nil
}

// burst posts batches of 100 as fast as ingest takes them for o.Burst, then
// waits for the last of them to reach the timeline and the receiver.
func burst(ctx context.Context, c *client, o Options, gen *dev.DemoGenerator, tr *tracker, res *Result) error {
	var (
		mu    sync.Mutex
		ids   []string
		total atomic.Int64
		wg    sync.WaitGroup
	)
	end := time.Now().Add(o.Burst)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) && ctx.Err() == nil {
				mu.Lock()
				batch := gen.Next(100)
				mu.Unlock()
				if err := c.do(ctx, http.MethodPost, o.IngestURL+"/v1/events", map[string]any{"events": batch}, http.StatusAccepted, nil); err != nil {
					continue
				}
				total.Add(int64(len(batch)))
				mu.Lock()
				ids = append(ids, batch[len(batch)-1]["id"].(string))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	done := time.Now()
	res.BurstEvents = int(total.Load())
	res.BurstPerSecond = float64(total.Load()) / o.Burst.Seconds()
	// Caught up when every batch's last event is in the timeline and at the
	// receiver. The timeline poller sees only the newest 200, so look each
	// up directly.
	deadline := time.Now().Add(5 * time.Minute)
	for _, id := range ids {
		for {
			tr.mu.Lock()
			_, hooked := tr.webhook[id]
			tr.mu.Unlock()
			if hooked && c.do(ctx, http.MethodGet, o.ProjectorURL+"/v1/events/"+id, nil, http.StatusOK, nil) == nil {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("burst: event %s not caught up within 5 minutes", id)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	res.BurstCatchUp = time.Since(done)
	return nil
}

// waitSeen waits until every acknowledged event has reached the receiver
// and, with timeline, the timeline, or until within has passed.
func waitSeen(ctx context.Context, tr *tracker, timeline bool, within time.Duration) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		tr.mu.Lock()
		missing := 0
		for id := range tr.acked {
			if _, ok := tr.timeline[id]; timeline && !ok {
				missing++
			} else if _, ok := tr.webhook[id]; !ok {
				missing++
			}
		}
		tr.mu.Unlock()
		if missing == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pollTimeline reads the newest page of the activity feed every interval
// and records when each event first appears.
func pollTimeline(ctx context.Context, c *client, base string, every time.Duration, tr *tracker) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var page struct {
			Events []struct {
				ID string `json:"id"`
			} `json:"events"`
		}
		if tr.measuring.Load() {
			tr.polls.Add(1)
		}
		if err := c.do(ctx, http.MethodGet, base+"/v1/activity?limit=200", nil, http.StatusOK, &page); err != nil {
			continue
		}
		now := time.Now()
		for _, e := range page.Events {
			tr.seen(tr.timeline, e.ID, now)
		}
	}
}

// latencies returns the distribution of to[id]-from[id] over the ids in
// acked; ids missing from to count as Missing.
func latencies(acked, from, to map[string]time.Time) Latency {
	var ds []time.Duration
	missing := 0
	for id := range acked {
		t, ok := to[id]
		if !ok {
			missing++
			continue
		}
		d := t.Sub(from[id])
		if d < 0 { // observed before the client read the 202
			d = 0
		}
		ds = append(ds, d)
	}
	slices.Sort(ds)
	l := Latency{N: len(ds), Missing: missing}
	if len(ds) > 0 {
		q := func(p float64) time.Duration { return ds[min(len(ds)-1, int(p*float64(len(ds))))] }
		l.P50, l.P90, l.P99, l.Max = q(0.50), q(0.90), q(0.99), ds[len(ds)-1]
	}
	return l
}

type client struct {
	key  string
	http *http.Client
}

func (c *client) do(ctx context.Context, method, url string, body any, want int, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, msg)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}
