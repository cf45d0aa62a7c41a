package webhooker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/eventline/eventline/internal/httpapi"
	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/internal/webhooker/delivery"
	"github.com/eventline/eventline/internal/webhooker/endpoint"
	"github.com/eventline/eventline/pkg/events"
)

func (a *API) deliveries(w http.ResponseWriter, r *http.Request) {
	tenant, id := tenantOf(r), r.PathValue("id")
	if _, err := a.store.GetEndpoint(r.Context(), tenant, id); err != nil {
		a.respond(w, r, endpoint.Endpoint{}, err)
		return
	}
	status := r.URL.Query().Get("status")
	if st := delivery.Status(status); st != "" && st != delivery.StatusPending && st != delivery.StatusSucceeded && st != delivery.StatusFailed {
		httpapi.WriteProblem(w, httpapi.Problem{Type: httpapi.TypeValidation, Title: "Invalid parameters", Status: http.StatusBadRequest,
			Detail: "fix the listed parameters", Errors: []events.FieldError{{Field: "status", Message: "must be pending, succeeded or failed"}}})
		return
	}
	limit, ok := a.limit(w, r)
	if !ok {
		return
	}
	ds, err := a.ledger.List(r.Context(), tenant, id, status, r.URL.Query().Get("cursor"), limit+1)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var next *string
	if len(ds) > limit {
		ds = ds[:limit]
		c := ds[limit-1].ID
		next = &c
	}
	if ds == nil {
		ds = []delivery.Delivery{}
	}
	httpapi.JSON(w, http.StatusOK, map[string]any{"deliveries": ds, "next_cursor": next})
}

func (a *API) retry(w http.ResponseWriter, r *http.Request) {
	err := a.ledger.Retry(r.Context(), tenantOf(r), r.PathValue("id"), a.now())
	switch {
	case errors.Is(err, delivery.ErrNotFound):
		httpapi.Error(w, http.StatusNotFound, "no delivery with this id")
	case err != nil:
		a.fail(w, r, err)
	default:
		httpapi.JSON(w, http.StatusAccepted, map[string]any{"id": r.PathValue("id"), "status": delivery.StatusPending})
	}
}

// replay re-sends the endpoint's matching events recorded in [since,
// until) from the log, including events that were never attempted (the
// endpoint did not exist yet, or did not match then).
func (a *API) replay(w http.ResponseWriter, r *http.Request) {
	tenant := tenantOf(r)
	ep, err := a.store.GetEndpoint(r.Context(), tenant, r.PathValue("id"))
	if err != nil {
		a.respond(w, r, ep, err)
		return
	}
	var in struct {
		Since *time.Time `json:"since"`
		Until *time.Time `json:"until"`
	}
	if !a.decode(w, r, &in) {
		return
	}
	now := a.now()
	until := now
	if in.Until != nil {
		until = *in.Until
	}
	var errs []events.FieldError
	if in.Since == nil {
		errs = append(errs, events.FieldError{Field: "since", Message: "is required (RFC 3339)"})
	} else if !in.Since.Before(until) {
		errs = append(errs, events.FieldError{Field: "until", Message: "must be after since"})
	}
	if !ep.Enabled {
		errs = append(errs, events.FieldError{Field: "id", Message: "the webhook is disabled; enable it before replaying"})
	}
	if len(errs) > 0 {
		httpapi.ValidationFailed(w, "the replay cannot start", errs)
		return
	}
	evs, err := a.scan(r.Context(), ep, *in.Since, until)
	if errors.Is(err, errTooMany) {
		httpapi.ValidationFailed(w, "the range holds too many events", []events.FieldError{{Field: "since", Message: fmt.Sprintf("the range holds more than %d matching events; replay a shorter range at a time", a.maxReplay)}})
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	n, err := a.ledger.Resend(r.Context(), ep.Tenant, ep.ID, evs, now)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	httpapi.JSON(w, http.StatusAccepted, map[string]any{"deliveries": n})
}

var errTooMany = errors.New("too many events")

// scan reads the tenant's events recorded in [since, until) from the
// stream and keeps those the endpoint matches. It reads with direct gets,
// not a consumer: the webhooker's NATS identity may not create consumers.
func (a *API) scan(ctx context.Context, ep endpoint.Endpoint, since, until time.Time) ([]events.Event, error) {
	subj, err := events.TenantSubjects(ep.Tenant)
	if err != nil {
		return nil, err
	}
	var out []events.Event
	match := ep
	match.Enabled = true
	tooMany := false
	err = stream.ReadSince(ctx, a.js.Conn(), subj, since, 0, func(m stream.StoredMsg) bool {
		if !m.Time.Before(until) {
			return false
		}
		e, err := events.ParseStored(events.Message{Subject: m.Subject, Data: m.Data, Header: m.Header, Seq: m.Seq, Timestamp: m.Time})
		if err != nil || !match.Matches(e) {
			return true
		}
		out = append(out, e)
		tooMany = len(out) > a.maxReplay
		return !tooMany
	})
	if err != nil {
		return nil, fmt.Errorf("read the log: %w", err)
	}
	if tooMany {
		return nil, errTooMany
	}
	return out, nil
}
