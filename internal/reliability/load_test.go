//go:build reliability

package reliability

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// loadConfig shapes the load: Rate events per second in total, sent as
// requests of Batch events by Workers concurrent clients, until Total
// events are acknowledged (0: until stopped).
type loadConfig struct {
	Prefix  string // event id prefix
	Rate    int
	Batch   int
	Workers int
	Total   int
}

// load is a set of HTTP clients appending events with client-chosen ids.
// A request answered 503 or not answered at all is re-sent with the same
// ids until it is answered 202, as the README tells clients to; any other
// answer fails the test. Acknowledged means answered 202 with a seq.
type load struct {
	t    *testing.T
	cfg  loadConfig
	url  func() string
	key  string
	http *http.Client
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once

	requests, unavailable, transport, duplicates atomic.Int64
	firstFailure, lastFailure                    atomic.Int64 // unix nanos

	mu    sync.Mutex
	acked map[string]uint64 // id -> seq from the 202
	done  chan struct{}     // closed when Total is reached

	doneOnce sync.Once
}

func startLoad(t *testing.T, s *system, cfg loadConfig) *load {
	t.Helper()
	if cfg.Workers == 0 {
		cfg.Workers = 8
	}
	if cfg.Batch == 0 {
		cfg.Batch = 20
	}
	if cfg.Rate == 0 {
		cfg.Rate = 1000
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "e"
	}
	l := &load{
		t: t, cfg: cfg, url: s.ingestURL, key: s.key,
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Workers}},
		stop: make(chan struct{}), acked: map[string]uint64{}, done: make(chan struct{}),
	}
	var quota atomic.Int64
	quota.Store(int64(cfg.Total))
	for w := range cfg.Workers {
		l.wg.Add(1)
		go l.worker(w, &quota)
	}
	t.Cleanup(l.halt)
	return l
}

// halt stops sending new requests; a request that was not yet answered 202
// keeps being re-sent for up to a minute, so the load ends with nothing in
// doubt.
func (l *load) halt() {
	l.once.Do(func() {
		close(l.stop)
		l.wg.Wait()
		l.http.CloseIdleConnections()
	})
}

// ackedIDs returns the acknowledged event ids.
func (l *load) ackedIDs() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := make([]string, 0, len(l.acked))
	for id := range l.acked {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// record adds an event acknowledged outside the load (a test's own post).
func (l *load) record(id string, seq uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.acked[id] = seq
}

func (l *load) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// waitAcked waits until at least n events are acknowledged.
func (l *load) waitAcked(n int, within time.Duration) {
	l.t.Helper()
	deadline := time.Now().Add(within)
	for l.ackedCount() < n {
		if time.Now().After(deadline) {
			l.t.Fatalf("load: %d of %d events acknowledged after %v", l.ackedCount(), n, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (l *load) failures() int64 { return l.unavailable.Load() + l.transport.Load() }

func (l *load) summary() string {
	return fmt.Sprintf("%d requests answered 202 (%d events re-sent came back duplicate), %d answered 503, %d without answer",
		l.requests.Load(), l.duplicates.Load(), l.unavailable.Load(), l.transport.Load())
}

func (l *load) worker(w int, quota *atomic.Int64) {
	defer l.wg.Done()
	interval := time.Duration(float64(time.Second) * float64(l.cfg.Batch*l.cfg.Workers) / float64(l.cfg.Rate))
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for r := 0; ; r++ {
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
		n := l.cfg.Batch
		if l.cfg.Total > 0 {
			left := quota.Add(-int64(n))
			if left+int64(n) <= 0 {
				return
			}
			if left < 0 {
				n += int(left)
			}
		}
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("%s-w%02d-r%06d-%03d", l.cfg.Prefix, w, r, i)
		}
		if !l.sendUntilAcked(ids, r) {
			return
		}
		if l.cfg.Total > 0 && l.ackedCount() >= l.cfg.Total {
			l.doneOnce.Do(func() { close(l.done) })
		}
	}
}

// sendUntilAcked posts ids until the answer is 202. It gives up (false)
// after another answer, or a minute after the load was halted.
func (l *load) sendUntilAcked(ids []string, r int) bool {
	var haltedAt time.Time
	for {
		switch l.send(ids, r) {
		case http.StatusAccepted:
			return true
		case http.StatusServiceUnavailable, 0:
			now := time.Now().UnixNano()
			l.firstFailure.CompareAndSwap(0, now)
			l.lastFailure.Store(now)
		default:
			return false
		}
		select {
		case <-l.stop:
			if haltedAt.IsZero() {
				haltedAt = time.Now()
			}
			if time.Since(haltedAt) > time.Minute {
				l.t.Errorf("load: %d events still not acknowledged a minute after the load was halted", len(ids))
				return false
			}
		default:
		}
		time.Sleep(100 * time.Millisecond) // as Retry-After asks, a little faster
	}
}

// send posts one request; it returns the status, 0 when there was no
// answer, -1 after reporting an unexpected answer.
func (l *load) send(ids []string, r int) int {
	es := make([]any, len(ids))
	for i, id := range ids {
		es[i] = newEvent(id, r*1000+i)
	}
	raw, err := json.Marshal(map[string]any{"events": es})
	if err != nil {
		l.t.Errorf("encode: %v", err)
		return -1
	}
	req, err := http.NewRequest(http.MethodPost, l.url()+"/v1/events", bytes.NewReader(raw))
	if err != nil {
		l.t.Errorf("request: %v", err)
		return -1
	}
	req.Header.Set("Authorization", "Bearer "+l.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := l.http.Do(req)
	if err != nil {
		l.transport.Add(1)
		return 0
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		l.transport.Add(1)
		return 0
	}
	switch resp.StatusCode {
	case http.StatusAccepted:
		var ok struct {
			Events []struct {
				ID        string
				Seq       uint64
				Duplicate bool
			}
		}
		if err := json.Unmarshal(answer, &ok); err != nil || len(ok.Events) != len(ids) {
			l.t.Errorf("load: 202 for %d events with body %.300s (%v)", len(ids), answer, err)
			return -1
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		for i, e := range ok.Events {
			if e.ID != ids[i] || e.Seq == 0 {
				l.t.Errorf("load: 202 result %d is %+v for id %s", i, e, ids[i])
				return -1
			}
			if prev, seen := l.acked[e.ID]; seen && prev != e.Seq {
				l.t.Errorf("load: %s acknowledged at seq %d and at seq %d", e.ID, prev, e.Seq)
			}
			l.acked[e.ID] = e.Seq
			if e.Duplicate {
				l.duplicates.Add(1)
			}
		}
		l.requests.Add(1)
	case http.StatusServiceUnavailable:
		l.unavailable.Add(1)
	default:
		l.t.Errorf("load: POST of %d events answered %d: %.300s", len(ids), resp.StatusCode, answer)
		return -1
	}
	return resp.StatusCode
}

// newEvent is a card event on one of a few boards: two timeline rows
// (the card's and the board's) and one webhook delivery.
// loadBoards is how many boards the load spreads its cards over.
const loadBoards = 5

func newEvent(id string, n int) map[string]any {
	actions := []string{"created", "moved", "closed", "commented"}
	return map[string]any{
		"id":          id,
		"action":      actions[n%len(actions)],
		"eventable":   map[string]string{"type": "card", "id": fmt.Sprintf("c%d", n%97)},
		"creator":     map[string]string{"type": "user", "id": fmt.Sprintf("u%d", n%13)},
		"parents":     []map[string]string{{"type": "board", "id": fmt.Sprintf("b%d", n%loadBoards)}},
		"particulars": map[string]any{"n": n},
	}
}
