package projector

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/browser"
	"github.com/eventline/eventline/internal/httpapi"
	"github.com/eventline/eventline/internal/render"
	"github.com/eventline/eventline/pkg/events"
)

// API serves the timeline endpoints of docs/contract.md (HTTP API,
// timelines) and the tenant's rejected events, with the read scope.
type API struct {
	store *Store
	auth  httpapi.Authenticator
	log   *slog.Logger
	// guard admits user tokens on the timelines they list (docs/browser.md)
	// and sentences renders events with the tenant's templates; NewService
	// sets them.
	guard     *browser.Guard
	sentences *render.Store
}

// sentencePage is a page with sentences=true: each event's sentence by
// event id (internal/render), what the timeline component shows.
type sentencePage struct {
	Page
	Sentences map[string]render.Rendered `json:"sentences"`
}

// NewAPI returns the timeline API.
func NewAPI(store *Store, auth httpapi.Authenticator, log *slog.Logger) *API {
	return &API{store: store, auth: auth, log: log}
}

// Routes registers the endpoints on mux.
func (a *API) Routes(mux httpapi.Router) {
	read := func(h http.HandlerFunc) http.Handler { return httpapi.RequireScope(a.auth, apikey.ScopeRead, h) }
	if a.guard == nil {
		a.guard = browser.NewGuard(a.auth, nil, nil, a.log)
	}
	if a.sentences == nil {
		a.sentences = render.NewStore(nil)
	}
	mux.Handle("GET /v1/timelines/{type}/{id}", a.guard.Allow(apikey.ScopeRead, browser.ListedTimeline, http.HandlerFunc(a.timeline)))
	mux.Handle("OPTIONS /v1/timelines/{type}/{id}", a.guard.Preflight())
	mux.Handle("GET /v1/activity", read(a.activity))
	mux.Handle("GET /v1/events/{id}", read(a.event))
	mux.Handle("GET /v1/rejected-events", read(a.rejected))
}

func (a *API) timeline(w http.ResponseWriter, r *http.Request) {
	obj := events.Ref{Type: r.PathValue("type"), ID: r.PathValue("id")}
	var errs []events.FieldError
	if !events.IsName(obj.Type) {
		errs = append(errs, events.FieldError{Field: "type", Message: "must match ^[a-z][a-z0-9_]{0,62}$"})
	}
	if !validRefID(obj.ID) {
		errs = append(errs, events.FieldError{Field: "id", Message: "must be 1-256 bytes of UTF-8 without control characters"})
	}
	a.list(w, r, &obj, errs)
}

func (a *API) activity(w http.ResponseWriter, r *http.Request) { a.list(w, r, nil, nil) }

func (a *API) list(w http.ResponseWriter, r *http.Request, obj *events.Ref, errs []events.FieldError) {
	key, _ := httpapi.KeyFrom(r.Context())
	q, qerrs := parseQuery(r.URL.Query(), key.Tenant)
	errs = append(errs, qerrs...)
	if len(errs) > 0 {
		httpapi.WriteProblem(w, httpapi.Problem{Type: httpapi.TypeValidation, Title: "Invalid parameters", Status: http.StatusBadRequest,
			Detail: "fix the listed parameters", Errors: errs})
		return
	}
	q.Object = obj
	page, err := a.store.List(r.Context(), q)
	if err != nil {
		a.log.ErrorContext(r.Context(), "timeline query failed", "error", err)
		httpapi.Unavailable(w, time.Second, "the timeline cannot be read right now; retry")
		return
	}
	if page.Events == nil {
		page.Events = []events.Event{}
	}
	if !q.Sentences {
		if body, ok := appendPage(make([]byte, 0, 64+len(page.Events)*512), page); ok {
			httpapi.JSONBytes(w, http.StatusOK, body)
			return
		}
		httpapi.JSON(w, http.StatusOK, page)
		return
	}
	set, err := a.sentences.For(r.Context(), key.Tenant)
	if err != nil {
		a.log.WarnContext(r.Context(), "cannot read the tenant's sentence templates; using the built-in ones", "error", err)
	}
	out := sentencePage{Page: page, Sentences: make(map[string]render.Rendered, len(page.Events))}
	for _, e := range page.Events {
		out.Sentences[e.ID] = set.Render(e).Rendered()
	}
	httpapi.JSON(w, http.StatusOK, out)
}

// appendPage writes page as httpapi.JSON does, byte for byte, with each
// event written by events.AppendStored, or by its MarshalJSON when it needs
// escaping (encoding/json would only compact that output again, which
// leaves it as it is); false, with dst unchanged, if an event cannot be
// encoded (TestAppendPageMatchesJSON). By encoding/json a page of 200
// events cost the projector ~3 ms of CPU, most of it reflection and
// compacting every event's JSON a second time.
func appendPage(dst []byte, page Page) ([]byte, bool) {
	start := len(dst)
	dst = append(dst, `{"events":[`...)
	for i := range page.Events {
		if i > 0 {
			dst = append(dst, ',')
		}
		var ok bool
		if dst, ok = events.AppendStored(dst, &page.Events[i]); !ok {
			b, err := page.Events[i].MarshalJSON()
			if err != nil {
				return dst[:start], false
			}
			dst = append(dst, b...)
		}
	}
	dst = append(dst, `],"next_cursor":`...)
	if page.NextCursor == nil {
		dst = append(dst, "null"...)
	} else {
		b, err := json.Marshal(*page.NextCursor) // base64url: never escaped
		if err != nil {
			return dst[:start], false
		}
		dst = append(dst, b...)
	}
	return append(dst, "}\n"...), true
}

func (a *API) event(w http.ResponseWriter, r *http.Request) {
	key, _ := httpapi.KeyFrom(r.Context())
	e, err := a.store.Get(r.Context(), key.Tenant, r.PathValue("id"))
	switch {
	case errors.Is(err, ErrNotFound):
		httpapi.Error(w, http.StatusNotFound, "no event with this id (events may take a moment to appear after they are appended)")
	case err != nil:
		a.log.ErrorContext(r.Context(), "event query failed", "error", err)
		httpapi.Unavailable(w, time.Second, "the event cannot be read right now; retry")
	default:
		httpapi.JSON(w, http.StatusOK, e)
	}
}

var queryParams = []string{"limit", "cursor", "action", "creator", "eventable_type", "since", "until", "sentences"}

// parseQuery reads the list parameters, naming every bad one.
func parseQuery(v url.Values, tenant string) (Query, []events.FieldError) {
	q := Query{Tenant: tenant}
	var errs []events.FieldError
	bad := func(field, format string, args ...any) {
		errs = append(errs, events.FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	q.Limit = listParams(v, queryParams, " (action takes a comma-separated list)", bad)
	if s := v.Get("cursor"); s != "" {
		c, err := decodeCursor(s, tenant)
		if err != nil {
			bad("cursor", "%s", err.Error())
		} else {
			q.After = &c
		}
	}
	if s := v.Get("action"); s != "" {
		for _, a := range strings.Split(s, ",") {
			a = strings.TrimSpace(a)
			if typ, act, ok := strings.Cut(a, "."); ok {
				if !events.IsName(typ) || !events.IsName(act) {
					bad("action", "%q is neither an action (closed) nor a type.action (card.closed)", a)
					continue
				}
				q.Types = append(q.Types, a)
			} else if events.IsName(a) {
				q.Actions = append(q.Actions, a)
			} else {
				bad("action", "%q is neither an action (closed) nor a type.action (card.closed)", a)
			}
		}
	}
	if s := v.Get("creator"); s != "" {
		typ, id, ok := strings.Cut(s, ":")
		if !ok || !events.IsName(typ) || !validRefID(id) {
			bad("creator", "must be type:id, for example user:u7")
		} else {
			q.Creator = &events.Ref{Type: typ, ID: id}
		}
	}
	switch v.Get("sentences") {
	case "", "false":
	case "true":
		q.Sentences = true
	default:
		bad("sentences", "must be true or false")
	}
	if s := v.Get("eventable_type"); s != "" {
		if !events.IsName(s) {
			bad("eventable_type", "must match ^[a-z][a-z0-9_]{0,62}$")
		} else {
			q.EventableType = s
		}
	}
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		if s := v.Get(f.name); s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				bad(f.name, "must be an RFC 3339 time such as 2026-11-25T10:00:00Z")
			} else {
				*f.dst = t
			}
		}
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		bad("until", "must be after since")
	}
	slices.SortStableFunc(errs, func(a, b events.FieldError) int { return strings.Compare(a.Field, b.Field) })
	return q, errs
}

// listParams checks what every list of this API shares: each parameter
// is one of known and given once (hint follows that message), and limit is
// 1-200. It returns the limit (default 50); bad records each problem.
func listParams(v url.Values, known []string, hint string, bad func(field, format string, args ...any)) int {
	for name, vals := range v {
		if !slices.Contains(known, name) {
			if name == "" {
				name = `""`
			}
			bad(name, "is not a parameter; use %s", strings.Join(known, ", "))
		} else if len(vals) > 1 {
			bad(name, "is given %d times; give it once%s", len(vals), hint)
		}
	}
	limit := 50
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 200 {
			bad("limit", "must be a whole number from 1 to 200")
		} else {
			limit = n
		}
	}
	return limit
}

func validRefID(s string) bool {
	return s != "" && len(s) <= events.MaxRefIDLen && utf8.ValidString(s) && strings.IndexFunc(s, unicode.IsControl) < 0
}
