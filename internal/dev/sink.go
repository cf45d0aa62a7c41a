package dev

import (
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/eventline/eventline/internal/httpapi"
)

// sink is a local webhook receiver for dev: POST records a delivery, GET
// lists the newest ones, so the webhook side can be seen without a tunnel.
type sink struct {
	mu       sync.Mutex
	total    int
	received []received // newest last, at most sinkKeep
}

type received struct {
	WebhookID string          `json:"webhook_id"`
	At        time.Time       `json:"received_at"`
	Signature string          `json:"webhook_signature"`
	Body      json.RawMessage `json:"body"`
}

const sinkKeep = 100

func newSink() *sink { return &sink{} }

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		s.mu.Lock()
		out := struct {
			Total    int        `json:"total"`
			Received []received `json:"received"`
		}{s.total, make([]received, 0, len(s.received))}
		for i := len(s.received) - 1; i >= 0; i-- {
			out.Received = append(out.Received, s.received[i])
		}
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil || !json.Valid(body) {
		httpapi.Error(w, http.StatusBadRequest, "send the webhook body as JSON")
		return
	}
	rec := received{WebhookID: r.Header.Get("webhook-id"), At: time.Now().UTC(), Signature: r.Header.Get("webhook-signature"), Body: body}
	s.mu.Lock()
	s.total++
	s.received = append(s.received, rec)
	if len(s.received) > sinkKeep {
		s.received = s.received[len(s.received)-sinkKeep:]
	}
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}
