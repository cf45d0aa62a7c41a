package delivery

import (
	"fmt"
	"time"
)

// DisableRule disables an endpoint that keeps failing: at least Failures
// consecutive failed attempts spanning at least Span. Default 20 and 24h.
type DisableRule struct {
	Failures int
	Span     time.Duration
}

func (r DisableRule) withDefaults() DisableRule {
	if r.Failures <= 0 {
		r.Failures = 20
	}
	if r.Span <= 0 {
		r.Span = 24 * time.Hour
	}
	return r
}

// trackerState is an endpoint's failure tracker once a batch of outcomes
// moved it (Ledger.track), as the disable rule reads it.
type trackerState struct {
	enabled  bool       // the endpoint is enabled
	gone     bool       // it answered 410 Gone in the batch
	failures int        // consecutive failed attempts
	since    *time.Time // the first of them; nil: none
	at       time.Time  // when the batch's last attempt finished
}

// disableVerdict says whether to disable an endpoint, and why (the
// endpoint's disabled_reason, shown to its tenant).
type disableVerdict struct {
	disable bool
	reason  string
}

// verdict applies the rule to an endpoint's tracker: an endpoint already
// disabled stays as it is; one that answered 410 Gone is disabled; one
// whose consecutive failures reach Failures and span at least Span (from
// the first of them to s.at) is disabled.
func (r DisableRule) verdict(s trackerState) disableVerdict {
	switch {
	case !s.enabled:
	case s.gone:
		return disableVerdict{disable: true, reason: "the endpoint answered 410 Gone"}
	case s.since != nil && s.failures >= r.Failures && s.at.Sub(*s.since) >= r.Span:
		return disableVerdict{disable: true, reason: fmt.Sprintf("%d consecutive failed attempts since %s", s.failures, s.since.UTC().Format(time.RFC3339))}
	}
	return disableVerdict{}
}
