package webhooker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/httpapi"
	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/webhooker/delivery"
	"github.com/eventline/eventline/internal/webhooker/endpoint"
	"github.com/eventline/eventline/pkg/events"
	"github.com/eventline/eventline/pkg/webhook"
)

// URLValidator refuses URLs webhooks must not reach (SSRF).
type URLValidator interface {
	ValidateURL(ctx context.Context, rawURL string) error
}

// API serves the webhook endpoints of docs/contract.md §2; every route needs the
// admin scope (endpoints carry secrets).
type API struct {
	store     *endpoint.Store  // the endpoints
	ledger    *delivery.Ledger // their deliveries: the log, retries and resends
	auth      httpapi.Authenticator
	urls      URLValidator
	js        jetstream.JetStream
	pub       *events.Publisher // test events; nil without js
	now       func() time.Time
	log       *slog.Logger
	maxReplay int
	// maxEndpoints caps a tenant's endpoints (not deleted) at creation;
	// 0: no cap (WEBHOOK_MAX_ENDPOINTS, docs/webhooks.md).
	maxEndpoints int
}

// NewAPI returns the webhook API over the endpoints in store and their
// deliveries in ledger.
func NewAPI(store *endpoint.Store, ledger *delivery.Ledger, auth httpapi.Authenticator, urls URLValidator, js jetstream.JetStream, now func() time.Time, log *slog.Logger) *API {
	if now == nil {
		now = time.Now
	}
	a := &API{store: store, ledger: ledger, auth: auth, urls: urls, js: js, now: now, log: log, maxReplay: 100_000, maxEndpoints: endpoint.DefaultMaxEndpoints}
	if js != nil {
		// The connection's server was checked when js was made; a
		// publisher over it cannot fail that check again.
		a.pub, _ = events.NewPublisher(js.Conn())
	}
	return a
}

// WithMaxEndpoints sets how many endpoints (not deleted) a tenant may have:
// a create beyond it is refused with 422. 0 means no cap; NewAPI's default
// is DefaultMaxEndpoints.
func (a *API) WithMaxEndpoints(n int) *API {
	a.maxEndpoints = max(n, 0)
	return a
}

// Routes registers the endpoints on mux.
func (a *API) Routes(mux httpapi.Router) {
	admin := func(h http.HandlerFunc) http.Handler { return httpapi.RequireScope(a.auth, apikey.ScopeAdmin, h) }
	mux.Handle("POST /v1/webhooks", admin(a.create))
	mux.Handle("GET /v1/webhooks", admin(a.list))
	mux.Handle("GET /v1/webhooks/{id}", admin(a.get))
	mux.Handle("PATCH /v1/webhooks/{id}", admin(a.patch))
	mux.Handle("DELETE /v1/webhooks/{id}", admin(a.delete))
	mux.Handle("POST /v1/webhooks/{id}/enable", admin(a.enable))
	mux.Handle("POST /v1/webhooks/{id}/disable", admin(a.disable))
	mux.Handle("POST /v1/webhooks/{id}/secret/rotate", admin(a.rotate))
	mux.Handle("GET /v1/webhooks/{id}/deliveries", admin(a.deliveries))
	mux.Handle("POST /v1/webhooks/{id}/replay", admin(a.replay))
	mux.Handle("POST /v1/webhooks/{id}/test", admin(a.test))
	mux.Handle("POST /v1/deliveries/{id}/retry", admin(a.retry))
}

// endpointInput is the body of POST and PATCH. Pointers tell PATCH which
// fields were sent.
type endpointInput struct {
	URL           *string       `json:"url"`
	Events        *[]string     `json:"events"`
	Parents       *[]events.Ref `json:"parents"`
	Format        *string       `json:"format"`
	Signing       *string       `json:"signing"`
	Description   *string       `json:"description"`
	RateLimit     *int          `json:"rate_limit"`
	RetrySchedule *[]int        `json:"retry_schedule"`
}

type endpointView struct {
	endpoint.Endpoint
	Secret string `json:"secret,omitempty"`
}

// view shows a new or rotated endpoint: an HMAC secret once, here; an
// Ed25519 signing key never (receivers verify with public_key).
func view(e endpoint.Endpoint, secret string) endpointView {
	if webhook.IsSigningKey(secret) {
		secret = ""
	}
	return endpointView{Endpoint: e, Secret: secret}
}

// newSecret makes an endpoint's signing secret: an Ed25519 signing key
// when asymmetric, else an HMAC secret.
func newSecret(asymmetric bool) (string, error) {
	if asymmetric {
		return webhook.GenerateSigningKey()
	}
	return webhook.GenerateSecret()
}

func tenantOf(r *http.Request) string {
	k, _ := httpapi.KeyFrom(r.Context())
	return k.Tenant
}

// decode reads a JSON body of at most 64 KiB into dst. The raw bytes are
// checked first (events.CheckStorable): encoding/json would replace invalid
// UTF-8 and lone surrogates with U+FFFD, and Postgres refuses NUL, so such
// input is refused naming its field instead of being stored rewritten.
func (a *API) decode(w http.ResponseWriter, r *http.Request, dst any) bool {
	return decodeJSON(w, r, dst)
}

// decodeJSON is API.decode for handlers outside the API (the portal's).
func decodeJSON(w http.ResponseWriter, r *http.Request, dst any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			httpapi.Error(w, http.StatusRequestEntityTooLarge, "the body is larger than 65536 bytes (64 KiB)")
		} else {
			httpapi.Error(w, http.StatusBadRequest, "could not read the request body")
		}
		return false
	}
	if errs := events.CheckStorable(body, "body"); len(errs) > 0 {
		httpapi.ValidationFailed(w, "the body holds text or numbers that cannot be stored; nothing was changed", errs)
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		httpapi.ValidationFailed(w, "the body is not a valid JSON object of this endpoint: "+err.Error(), []events.FieldError{{Field: "body", Message: err.Error()}})
		return false
	}
	return true
}

// apply validates in and applies it to e; every problem is returned.
func (a *API) apply(ctx context.Context, e *endpoint.Endpoint, in endpointInput, creating bool) []events.FieldError {
	var errs []events.FieldError
	bad := func(field, format string, args ...any) {
		errs = append(errs, events.FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if in.URL != nil || creating {
		switch {
		case in.URL == nil || *in.URL == "":
			bad("url", "is required")
		case len(*in.URL) > 2048:
			bad("url", "is longer than 2048 characters")
		default:
			if err := a.urls.ValidateURL(ctx, *in.URL); err != nil {
				bad("url", "%s", err.Error())
			} else {
				e.URL = *in.URL
			}
		}
	}
	if in.Events != nil || creating {
		switch {
		case in.Events == nil || len(*in.Events) == 0:
			bad("events", `is required: a list of event types such as "card.closed", "comment.*" or "*"`)
		case len(*in.Events) > 100:
			bad("events", "has more than 100 patterns")
		default:
			for i, p := range *in.Events {
				if !endpoint.ValidPattern(p) {
					bad(fmt.Sprintf("events[%d]", i), `%q is not an event type pattern: use "type.action", "type.*", "*.action" or "*"`, p)
				}
			}
			e.Events = *in.Events
		}
	}
	if in.Parents != nil {
		if len(*in.Parents) > events.MaxParents {
			bad("parents", "has more than %d entries", events.MaxParents)
		}
		for i, p := range *in.Parents {
			// The rules of an event's parents: a filter no event can
			// match (an id with a newline, say) is refused.
			errs = append(errs, events.CheckRef(fmt.Sprintf("parents[%d]", i), p)...)
		}
		e.Parents = *in.Parents
	}
	if in.Signing != nil {
		switch {
		case !creating:
			bad("signing", "is chosen when the endpoint is created; create a new endpoint to change it")
		case *in.Signing != endpoint.SigningHMAC && *in.Signing != endpoint.SigningEd25519:
			bad("signing", `must be "hmac" (v1, the default) or "ed25519" (v1a)`)
		}
	}
	if in.Format != nil {
		if *in.Format != "json" && *in.Format != "slack" && *in.Format != "cloudevents" {
			bad("format", `must be "json", "slack" or "cloudevents"`)
		}
		e.Format = *in.Format
	} else if creating {
		e.Format = "json"
	}
	if in.Description != nil {
		if len(*in.Description) > 1000 {
			bad("description", "is longer than 1000 bytes")
		}
		e.Description = *in.Description
	}
	if in.RateLimit != nil {
		if *in.RateLimit < 0 || *in.RateLimit > 100_000 {
			bad("rate_limit", "must be deliveries per second from 1 to 100000, or 0 for the default")
		}
		e.RateLimit = *in.RateLimit
	}
	if in.RetrySchedule != nil {
		if len(*in.RetrySchedule) > 20 {
			bad("retry_schedule", "has more than 20 steps")
		}
		for i, s := range *in.RetrySchedule {
			if s < 1 || s > 7*24*3600 {
				bad(fmt.Sprintf("retry_schedule[%d]", i), "must be seconds from 1 to 604800 (7 days)")
			}
		}
		e.RetrySchedule = *in.RetrySchedule
	}
	return errs
}

func (a *API) create(w http.ResponseWriter, r *http.Request) {
	var in endpointInput
	if !a.decode(w, r, &in) {
		return
	}
	e := endpoint.Endpoint{Tenant: tenantOf(r)}
	if errs := a.apply(r.Context(), &e, in, true); len(errs) > 0 {
		httpapi.ValidationFailed(w, "the webhook is not valid; nothing was created", errs)
		return
	}
	secret, err := newSecret(in.Signing != nil && *in.Signing == endpoint.SigningEd25519)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	created, err := a.store.CreateEndpointCapped(r.Context(), e, secret, a.maxEndpoints)
	var capped *endpoint.EndpointCapError
	if errors.As(err, &capped) {
		httpapi.ValidationFailed(w, "the tenant has as many webhook endpoints as it may have; nothing was created",
			[]events.FieldError{{Field: "body", Message: fmt.Sprintf("a tenant may have at most %d webhook endpoints and this one has %d: "+
				"delete endpoints it no longer uses (DELETE /v1/webhooks/{id}), or ask the operator to raise WEBHOOK_MAX_ENDPOINTS", capped.Max, capped.Existing)}})
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	httpapi.JSON(w, http.StatusCreated, view(created, secret))
}

func (a *API) list(w http.ResponseWriter, r *http.Request) {
	limit, ok := a.limit(w, r)
	if !ok {
		return
	}
	eps, err := a.store.ListEndpoints(r.Context(), tenantOf(r), r.URL.Query().Get("cursor"), limit+1)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var next *string
	if len(eps) > limit {
		eps = eps[:limit]
		c := eps[limit-1].ID
		next = &c
	}
	if eps == nil {
		eps = []endpoint.Endpoint{}
	}
	httpapi.JSON(w, http.StatusOK, map[string]any{"webhooks": eps, "next_cursor": next})
}

func (a *API) limit(w http.ResponseWriter, r *http.Request) (int, bool) {
	limit := 50
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 200 {
			httpapi.WriteProblem(w, httpapi.Problem{Type: httpapi.TypeValidation, Title: "Invalid parameters", Status: http.StatusBadRequest,
				Detail: "fix the listed parameters", Errors: []events.FieldError{{Field: "limit", Message: "must be a whole number from 1 to 200"}}})
			return 0, false
		}
		limit = n
	}
	return limit, true
}

func (a *API) get(w http.ResponseWriter, r *http.Request) {
	e, err := a.store.GetEndpoint(r.Context(), tenantOf(r), r.PathValue("id"))
	a.respond(w, r, e, err)
}

func (a *API) patch(w http.ResponseWriter, r *http.Request) {
	var in endpointInput
	if !a.decode(w, r, &in) {
		return
	}
	e, err := a.store.GetEndpoint(r.Context(), tenantOf(r), r.PathValue("id"))
	if err != nil {
		a.respond(w, r, e, err)
		return
	}
	if errs := a.apply(r.Context(), &e, in, false); len(errs) > 0 {
		httpapi.ValidationFailed(w, "the change is not valid; nothing was changed", errs)
		return
	}
	e, err = a.store.UpdateEndpoint(r.Context(), e)
	a.respond(w, r, e, err)
}

func (a *API) delete(w http.ResponseWriter, r *http.Request) {
	if err := a.store.DeleteEndpoint(r.Context(), tenantOf(r), r.PathValue("id")); err != nil {
		a.respond(w, r, endpoint.Endpoint{}, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) enable(w http.ResponseWriter, r *http.Request) {
	e, err := a.store.SetEnabled(r.Context(), tenantOf(r), r.PathValue("id"), true, "")
	a.respond(w, r, e, err)
}

func (a *API) disable(w http.ResponseWriter, r *http.Request) {
	e, err := a.store.SetEnabled(r.Context(), tenantOf(r), r.PathValue("id"), false, "disabled by the API")
	a.respond(w, r, e, err)
}

func (a *API) rotate(w http.ResponseWriter, r *http.Request) {
	var in struct {
		GraceSeconds *int `json:"grace_seconds"`
	}
	if r.ContentLength != 0 && !a.decode(w, r, &in) {
		return
	}
	grace := 24 * 3600
	if in.GraceSeconds != nil {
		grace = *in.GraceSeconds
	}
	if grace < 0 || grace > 7*24*3600 {
		httpapi.ValidationFailed(w, "grace_seconds is out of range", []events.FieldError{{Field: "grace_seconds", Message: "must be from 0 to 604800 (7 days); default 86400"}})
		return
	}
	cur, err := a.store.GetEndpoint(r.Context(), tenantOf(r), r.PathValue("id"))
	if err != nil {
		a.respond(w, r, cur, err)
		return
	}
	secret, err := newSecret(cur.Signing == endpoint.SigningEd25519)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	now := a.now()
	e, err := a.store.RotateSecret(r.Context(), tenantOf(r), r.PathValue("id"), secret, now, now.Add(time.Duration(grace)*time.Second))
	if err != nil {
		a.respond(w, r, e, err)
		return
	}
	httpapi.JSON(w, http.StatusOK, view(e, secret))
}

func (a *API) respond(w http.ResponseWriter, r *http.Request, e endpoint.Endpoint, err error) {
	switch {
	case errors.Is(err, endpoint.ErrNotFound):
		httpapi.Error(w, http.StatusNotFound, "no webhook with this id")
	case err != nil:
		a.fail(w, r, err)
	default:
		httpapi.JSON(w, http.StatusOK, e)
	}
}

// fail answers a request the store could not serve: 422 naming the
// problem when Postgres refused a value of the request itself (a data
// exception: sending it again cannot help; validation should have refused
// it first), else 503, retry.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	if pgErr, ok := postgres.RefusedValue(err); ok {
		a.log.WarnContext(r.Context(), "webhook API: the database refused a value of the request", "path", r.URL.Path, "error", err)
		field := "body"
		if pgErr.ColumnName != "" {
			field = pgErr.ColumnName
		}
		httpapi.ValidationFailed(w, "a value of the request cannot be stored ("+pgErr.Message+"); text must be valid UTF-8 without NUL characters; nothing was changed",
			[]events.FieldError{{Field: field, Message: pgErr.Message}})
		return
	}
	a.log.ErrorContext(r.Context(), "webhook API", "path", r.URL.Path, "error", err)
	httpapi.Unavailable(w, time.Second, "the request could not be completed right now; retry")
}

// testEventDelay is how long a test event's delivery waits: every
// replica's registry sees an endpoint created or changed within it
// (Config.RefreshEvery), so an endpoint tested right after it was created
// or its secret rotated is attempted as it now is.
const testEventDelay = time.Second

// test appends a webhook.test event for the endpoint to the stream (so it
// is durable, in the tenant's timeline, and retryable like any event) and
// makes its delivery to this endpoint due in testEventDelay. It answers 202 with the
// event's id and sequence; the delivery shows in the endpoint's log.
func (a *API) test(w http.ResponseWriter, r *http.Request) {
	tenant := tenantOf(r)
	ep, err := a.store.GetEndpoint(r.Context(), tenant, r.PathValue("id"))
	if err != nil {
		a.respond(w, r, ep, err)
		return
	}
	if !ep.Enabled {
		httpapi.ValidationFailed(w, "the test event was not sent", []events.FieldError{{Field: "id", Message: "the webhook is disabled; enable it before sending a test event"}})
		return
	}
	if a.pub == nil {
		httpapi.Unavailable(w, time.Second, "this server cannot append events; retry")
		return
	}
	key, _ := httpapi.KeyFrom(r.Context())
	now := a.now()
	ev := events.Event{
		ID:          "webhook-test-" + delivery.NewID(),
		Tenant:      tenant,
		Action:      "test",
		Eventable:   events.Ref{Type: "webhook", ID: ep.ID},
		Creator:     events.Ref{Type: events.SystemCreator, ID: "webhooker"},
		Particulars: fmt.Appendf(nil, `{"endpoint_id":%q,"url":%q,"requested_with_key":%q}`, ep.ID, ep.URL, key.ID),
	}
	res, err := a.pub.Append(r.Context(), ev)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := ev.Normalize(now); err != nil {
		a.fail(w, r, err)
		return
	}
	ev.Seq = res.Seq
	if _, err := a.ledger.Resend(r.Context(), ep.Tenant, ep.ID, []events.Event{ev}, now.Add(testEventDelay)); err != nil {
		a.fail(w, r, err)
		return
	}
	httpapi.JSON(w, http.StatusAccepted, map[string]any{"event": map[string]any{"id": ev.ID, "seq": ev.Seq, "type": ev.Type}})
}
