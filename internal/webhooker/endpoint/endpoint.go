// Package endpoint holds the tenants' webhook endpoints: the Endpoint
// model and its event-type patterns, the Store that keeps endpoints in
// Postgres (tenant CRUD under row-level security, secrets sealed at rest,
// the change feed), and the Registry, each replica's in-memory copy that
// matches events to endpoints. The rest of the webhooker (package
// webhooker and its delivery and attempt packages) reads endpoints from
// here; see ../doc.go for how the parts work together.
package endpoint

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/eventline/eventline/pkg/events"
)

// Endpoint is a tenant's webhook destination.
type Endpoint struct {
	Tenant         string       `json:"-"`
	ID             string       `json:"id"`
	URL            string       `json:"url"`
	Events         []string     `json:"events"`
	Parents        []events.Ref `json:"parents,omitempty"`
	Format         string       `json:"format"`
	Description    string       `json:"description"`
	RateLimit      int          `json:"rate_limit,omitempty"`
	RetrySchedule  []int        `json:"retry_schedule,omitempty"` // seconds after each failed attempt
	Enabled        bool         `json:"enabled"`
	DisabledReason string       `json:"disabled_reason,omitempty"`
	CreatedAt      time.Time    `json:"created_at"`
	UpdatedAt      time.Time    `json:"updated_at"`
	// Signing is how deliveries are signed: SigningHMAC (v1, with the
	// secret shown at creation and rotation) or SigningEd25519 (v1a,
	// verified with PublicKey; the signing key never leaves eventline).
	Signing   string `json:"signing"`
	PublicKey string `json:"public_key,omitempty"`

	secrets   []secret
	deleted   bool
	changeSeq int64
}

// Signing schemes (Standard Webhooks v1 and v1a).
const (
	SigningHMAC    = "hmac"
	SigningEd25519 = "ed25519"
)

type secret struct {
	Secret    string     `json:"secret"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// ActiveSecrets are the secrets to sign with at now: the newest and any
// older one still in its rotation grace period.
func (e Endpoint) ActiveSecrets(now time.Time) []string {
	var out []string
	for _, s := range e.secrets {
		if s.ExpiresAt == nil || now.Before(*s.ExpiresAt) {
			out = append(out, s.Secret)
		}
	}
	return out
}

// TestEventType is the type of the events POST /v1/webhooks/{id}/test
// sends. Such an event is delivered to the one endpoint it names (its
// eventable), whatever that endpoint's filters, and never fanned out to
// the others (Matches).
const TestEventType = "webhook.test"

// Matches reports whether the endpoint wants the event: its type matches
// one of the patterns and, when parents are set, the event's eventable or
// one of its parents is among them. Test events (TestEventType) match no
// endpoint: the API delivers each to the one endpoint it tests.
func (e Endpoint) Matches(ev events.Event) bool {
	if !e.Enabled || e.deleted || ev.Type == TestEventType {
		return false // a test event goes only where the API sends it
	}
	if !slices.ContainsFunc(e.Events, func(p string) bool { return matchPattern(p, ev.Type) }) {
		return false
	}
	if len(e.Parents) == 0 {
		return true
	}
	for _, p := range e.Parents {
		if p == ev.Eventable || slices.Contains(ev.Parents, p) {
			return true
		}
	}
	return false
}

// matchPattern matches "*", "card.*", "*.closed" and exact "card.closed".
func matchPattern(pattern, typ string) bool {
	if pattern == "*" || pattern == typ {
		return true
	}
	pt, pa, _ := strings.Cut(pattern, ".")
	tt, ta, _ := strings.Cut(typ, ".")
	return (pt == "*" || pt == tt) && (pa == "*" || pa == ta)
}

// ValidPattern checks an event-type pattern: "*", "<type>.<action>" with
// either part "*".
func ValidPattern(p string) bool {
	if p == "*" {
		return true
	}
	t, a, ok := strings.Cut(p, ".")
	return ok && (t == "*" || events.IsName(t)) && (a == "*" || events.IsName(a))
}

// DefaultRetrySchedule is the wait after each failed attempt (docs/contract.md §3):
// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h; then the delivery fails.
var DefaultRetrySchedule = []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}

func (e Endpoint) Schedule() []time.Duration {
	if len(e.RetrySchedule) == 0 {
		return DefaultRetrySchedule
	}
	out := make([]time.Duration, len(e.RetrySchedule))
	for i, s := range e.RetrySchedule {
		out[i] = time.Duration(s) * time.Second
	}
	return out
}

func marshalParents(ps []events.Ref) ([]byte, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(ps)
	if err != nil {
		return nil, fmt.Errorf("encode parents: %w", err)
	}
	return b, nil
}
