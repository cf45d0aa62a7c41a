package notifier

import (
	"bytes"
	"encoding/json"
	"errors"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/browser"
	"github.com/eventline/eventline/internal/httpapi"
	"github.com/eventline/eventline/internal/render"
	"github.com/eventline/eventline/pkg/events"
)

// API serves the notification endpoints of docs/contract.md §2. Reads need the
// read scope (and so does marking read), watches and preferences the
// ingest scope (the key an application backend records events with), and
// rules the admin scope. Unsubscribe links carry their own signed token.
type API struct {
	store     *Store
	hub       *Hub
	auth      httpapi.Authenticator
	secret    []byte
	heartbeat time.Duration
	log       *slog.Logger
	// guard admits user tokens on the inbox paths and browser serves the
	// token and origin APIs (docs/browser.md); NewService sets them.
	guard   *browser.Guard
	browser *browser.API
	// sentences renders notifications and digests (internal/render).
	sentences *render.Store
	// digest composes digest previews as the sender would.
	digest DigestConfig
}

// NewAPI returns the notification API. secret signs unsubscribe links.
func NewAPI(store *Store, hub *Hub, auth httpapi.Authenticator, secret []byte, heartbeat time.Duration, log *slog.Logger) *API {
	if heartbeat <= 0 {
		heartbeat = 15 * time.Second
	}
	return &API{store: store, hub: hub, auth: auth, secret: secret, heartbeat: heartbeat, log: log}
}

// Routes registers the endpoints on mux.
func (a *API) Routes(mux httpapi.Router) {
	scope := func(s string, h http.HandlerFunc) http.Handler { return httpapi.RequireScope(a.auth, s, h) }
	if a.guard == nil {
		a.guard = browser.NewGuard(a.auth, nil, nil, a.log)
	}
	// What a browser may do with a user token for its own user.
	own := func(h http.HandlerFunc) http.Handler { return a.guard.Allow(apikey.ScopeRead, browser.OwnInbox, h) }
	if a.browser != nil {
		a.browser.Routes(mux, "/v1/users/{user_id}/notifications", "/v1/users/{user_id}/notifications/stream",
			"/v1/users/{user_id}/notifications/read-all", "/v1/users/{user_id}/notifications/{id}/read")
	}
	if a.sentences == nil {
		a.sentences = render.NewStore(nil)
	}
	render.NewAPI(a.sentences, a.auth, a.log).Routes(mux)
	mux.Handle("GET /components/{file}", browser.Components())
	mux.Handle("GET /v1/digests/preview", scope(apikey.ScopeRead, a.previewDigest))
	mux.Handle("GET /v1/notification-rules", scope(apikey.ScopeRead, a.getRules))
	mux.Handle("PUT /v1/notification-rules", scope(apikey.ScopeAdmin, a.putRules))
	mux.Handle("DELETE /v1/notification-rules", scope(apikey.ScopeAdmin, a.deleteRules))
	mux.Handle("PUT /v1/watches/{type}/{id}/users/{user_id}", scope(apikey.ScopeIngest, a.putWatch))
	mux.Handle("DELETE /v1/watches/{type}/{id}/users/{user_id}", scope(apikey.ScopeIngest, a.deleteWatch))
	mux.Handle("GET /v1/users/{user_id}/watches", scope(apikey.ScopeRead, a.listWatches))
	mux.Handle("GET /v1/users/{user_id}/notifications", own(a.inbox))
	mux.Handle("GET /v1/users/{user_id}/notifications/stream", own(a.stream))
	mux.Handle("POST /v1/users/{user_id}/notifications/read-all", own(a.readAll))
	mux.Handle("POST /v1/users/{user_id}/notifications/{id}/read", own(a.read))
	mux.Handle("GET /v1/users/{user_id}/preferences", scope(apikey.ScopeRead, a.getPreferences))
	mux.Handle("PUT /v1/users/{user_id}/preferences", scope(apikey.ScopeIngest, a.putPreferences))
	mux.HandleFunc("GET /v1/unsubscribe/{token}", a.unsubscribePage)
	mux.HandleFunc("POST /v1/unsubscribe/{token}", a.unsubscribe)
}

func (a *API) unavailable(w http.ResponseWriter, r *http.Request, what string, err error) {
	a.log.ErrorContext(r.Context(), what+" failed", "error", err)
	httpapi.Unavailable(w, time.Second, what+" is not possible right now; retry")
}

// user returns the key's tenant and the path's user id, answering 400 for
// a bad user id. A user id follows the rule of an event reference's id
// (events.CheckRefID).
func (a *API) user(w http.ResponseWriter, r *http.Request) (tenant, user string, ok bool) {
	return a.userOr(w, r, badParams)
}

// writingUser is user for a request that stores the user id: a bad one is
// a 422, as every invalid input a write API would store.
func (a *API) writingUser(w http.ResponseWriter, r *http.Request) (tenant, user string, ok bool) {
	return a.userOr(w, r, notStorable)
}

func (a *API) userOr(w http.ResponseWriter, r *http.Request, refuse func(http.ResponseWriter, []events.FieldError)) (tenant, user string, ok bool) {
	key, _ := httpapi.KeyFrom(r.Context())
	user = r.PathValue("user_id")
	if errs := events.CheckRefID("user_id", user); len(errs) > 0 {
		refuse(w, errs)
		return "", "", false
	}
	return key.Tenant, user, true
}

func badParams(w http.ResponseWriter, errs []events.FieldError) {
	httpapi.WriteProblem(w, httpapi.Problem{Type: httpapi.TypeValidation, Title: "Invalid parameters", Status: http.StatusBadRequest,
		Detail: "fix the listed parameters", Errors: errs})
}

// notStorable answers 422 for path parameters a write would store.
func notStorable(w http.ResponseWriter, errs []events.FieldError) {
	httpapi.ValidationFailed(w, "the path names an object or user that cannot be stored; nothing was changed", errs)
}

type rulesBody struct {
	Rules     []Rule `json:"rules"`
	IsDefault bool   `json:"is_default"`
}

func (a *API) getRules(w http.ResponseWriter, r *http.Request) {
	key, _ := httpapi.KeyFrom(r.Context())
	rs, def, err := a.store.RulesOf(r.Context(), key.Tenant)
	if err != nil {
		a.unavailable(w, r, "reading the rules", err)
		return
	}
	httpapi.JSON(w, http.StatusOK, rulesBody{Rules: rs.Rules, IsDefault: def})
}

func (a *API) putRules(w http.ResponseWriter, r *http.Request) {
	key, _ := httpapi.KeyFrom(r.Context())
	body, ok := httpapi.ReadJSON(w, r, MaxRulesBytes)
	if !ok {
		return
	}
	rs, err := ParseRules(body)
	var verr *events.ValidationError
	if errors.As(err, &verr) {
		httpapi.ValidationFailed(w, "the rules are not valid; index is the rule's position in rules", verr.Errors)
		return
	}
	if err := a.store.SetRules(r.Context(), key.Tenant, rs); err != nil {
		a.unavailable(w, r, "storing the rules", err)
		return
	}
	httpapi.JSON(w, http.StatusOK, rulesBody{Rules: rs.Rules})
}

func (a *API) deleteRules(w http.ResponseWriter, r *http.Request) {
	key, _ := httpapi.KeyFrom(r.Context())
	if err := a.store.ResetRules(r.Context(), key.Tenant); err != nil {
		a.unavailable(w, r, "resetting the rules", err)
		return
	}
	httpapi.JSON(w, http.StatusOK, rulesBody{Rules: DefaultRules().Rules, IsDefault: true})
}

func (a *API) watchPath(w http.ResponseWriter, r *http.Request) (string, events.Ref, string, bool) {
	key, _ := httpapi.KeyFrom(r.Context())
	obj := events.Ref{Type: r.PathValue("type"), ID: r.PathValue("id")}
	user := r.PathValue("user_id")
	// The object and the user follow the rules of an event's references,
	// so a watch can only name what events can.
	errs := append(events.CheckRef("", obj), events.CheckRefID("user_id", user)...)
	if len(errs) > 0 {
		notStorable(w, errs)
		return "", obj, "", false
	}
	return key.Tenant, obj, user, true
}

func (a *API) putWatch(w http.ResponseWriter, r *http.Request) {
	tenant, obj, user, ok := a.watchPath(w, r)
	if !ok {
		return
	}
	wt, err := a.store.AddWatch(r.Context(), tenant, obj, user)
	if err != nil {
		a.unavailable(w, r, "adding the watch", err)
		return
	}
	httpapi.JSON(w, http.StatusOK, wt)
}

func (a *API) deleteWatch(w http.ResponseWriter, r *http.Request) {
	tenant, obj, user, ok := a.watchPath(w, r)
	if !ok {
		return
	}
	if _, err := a.store.RemoveWatch(r.Context(), tenant, obj, user); err != nil {
		a.unavailable(w, r, "removing the watch", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// listParams reads limit and cursor (and status when withStatus), naming
// every bad parameter.
func listParams(r *http.Request, tenant, user string, withStatus bool) (limit int, after *cursor, unreadOnly bool, errs []events.FieldError) {
	v := r.URL.Query()
	limit = 50
	allowed := map[string]bool{"limit": true, "cursor": true, "status": withStatus}
	for name, vals := range v {
		switch {
		case !allowed[name]:
			hint := "limit, cursor"
			if withStatus {
				hint += ", status"
			}
			errs = append(errs, events.FieldError{Field: name, Message: "is not a parameter; use " + hint})
		case len(vals) > 1:
			errs = append(errs, events.FieldError{Field: name, Message: "is given more than once"})
		}
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 200 {
			errs = append(errs, events.FieldError{Field: "limit", Message: "must be a whole number from 1 to 200"})
		} else {
			limit = n
		}
	}
	if s := v.Get("cursor"); s != "" {
		c, err := decodeCursor(s, tenant, user)
		if err != nil {
			errs = append(errs, events.FieldError{Field: "cursor", Message: err.Error()})
		} else {
			after = &c
		}
	}
	if withStatus {
		switch v.Get("status") {
		case "", "all":
		case "unread":
			unreadOnly = true
		default:
			errs = append(errs, events.FieldError{Field: "status", Message: "must be unread or all"})
		}
	}
	return limit, after, unreadOnly, errs
}

func (a *API) listWatches(w http.ResponseWriter, r *http.Request) {
	tenant, user, ok := a.user(w, r)
	if !ok {
		return
	}
	limit, after, _, errs := listParams(r, tenant, user, false)
	if after != nil && after.ObjType == "" {
		errs = append(errs, events.FieldError{Field: "cursor", Message: errBadCursor.Error()})
	}
	if len(errs) > 0 {
		badParams(w, errs)
		return
	}
	p, err := a.store.Watches(r.Context(), tenant, user, limit, after)
	if err != nil {
		a.unavailable(w, r, "listing watches", err)
		return
	}
	httpapi.JSON(w, http.StatusOK, p)
}

func (a *API) inbox(w http.ResponseWriter, r *http.Request) {
	tenant, user, ok := a.user(w, r)
	if !ok {
		return
	}
	limit, after, unread, errs := listParams(r, tenant, user, true)
	if after != nil && after.ObjType != "" {
		errs = append(errs, events.FieldError{Field: "cursor", Message: errBadCursor.Error()})
	}
	if len(errs) > 0 {
		badParams(w, errs)
		return
	}
	p, err := a.store.Inbox(r.Context(), InboxQuery{Tenant: tenant, UserID: user, UnreadOnly: unread, Limit: limit, After: after})
	if err != nil {
		a.unavailable(w, r, "reading the inbox", err)
		return
	}
	a.describe(r, tenant, p.Notifications)
	httpapi.JSON(w, http.StatusOK, p)
}

func (a *API) read(w http.ResponseWriter, r *http.Request) {
	tenant, user, ok := a.user(w, r)
	if !ok {
		return
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		httpapi.Error(w, http.StatusNotFound, "no notification with this id for this user")
		return
	}
	n, err := a.store.MarkRead(r.Context(), tenant, user, id)
	switch {
	case errors.Is(err, ErrNotFound):
		httpapi.Error(w, http.StatusNotFound, "no notification with this id for this user")
	case err != nil:
		a.unavailable(w, r, "marking the notification read", err)
	default:
		a.describe(r, tenant, []Notification{n})
		httpapi.JSON(w, http.StatusOK, n)
	}
}

// describe sets the sentence and group name of each notification; with
// the built-in templates if the tenant's cannot be read.
func (a *API) describe(r *http.Request, tenant string, ns []Notification) {
	set, err := a.sentences.For(r.Context(), tenant)
	if err != nil {
		a.log.WarnContext(r.Context(), "cannot read the tenant's sentence templates; using the built-in ones", "error", err)
	}
	for i := range ns {
		e := lastEventOf(ns[i])
		s, g := set.Render(e).Rendered(), set.Name(e, ns[i].Group).Rendered()
		ns[i].Sentence, ns[i].GroupName = &s, &g
	}
}

func (a *API) readAll(w http.ResponseWriter, r *http.Request) {
	tenant, user, ok := a.user(w, r)
	if !ok {
		return
	}
	n, err := a.store.MarkAllRead(r.Context(), tenant, user)
	if err != nil {
		a.unavailable(w, r, "marking the inbox read", err)
		return
	}
	httpapi.JSON(w, http.StatusOK, map[string]any{"marked_read": n, "unread_total": 0})
}

func (a *API) getPreferences(w http.ResponseWriter, r *http.Request) {
	tenant, user, ok := a.user(w, r)
	if !ok {
		return
	}
	p, err := a.store.Preferences(r.Context(), tenant, user)
	if err != nil {
		a.unavailable(w, r, "reading preferences", err)
		return
	}
	httpapi.JSON(w, http.StatusOK, p)
}

// ParsePreferences decodes and validates a preferences body; absent
// fields take the defaults (no email, every_few_hours, UTC). The raw bytes
// are checked first (events.CheckStorable), so an email with invalid UTF-8
// is refused rather than stored with U+FFFD in it.
func ParsePreferences(body []byte) (Preferences, []events.FieldError) {
	p := defaultPreferences()
	if errs := events.CheckStorable(body, "body"); len(errs) > 0 {
		return p, errs
	}
	var in struct {
		Email    *string `json:"email"`
		Digest   *string `json:"digest"`
		Timezone *string `json:"timezone"`
	}
	if err := decodeStrict(body, &in); err != nil {
		return p, []events.FieldError{{Field: "body", Message: err.Error() + `; send {"email", "digest", "timezone"}`}}
	}
	var errs []events.FieldError
	if in.Email != nil && *in.Email != "" {
		addr, err := mail.ParseAddress(*in.Email)
		if err != nil || addr.Address != *in.Email || len(*in.Email) > 254 || strings.ContainsAny(*in.Email, "\r\n") {
			errs = append(errs, events.FieldError{Field: "email", Message: "must be a plain email address such as ana@example.com"})
		} else {
			p.Email = *in.Email
		}
	}
	if in.Digest != nil {
		switch *in.Digest {
		case DigestNever, DigestEveryFewHours, DigestDaily, DigestWeekly:
			p.Digest = *in.Digest
		default:
			errs = append(errs, events.FieldError{Field: "digest", Message: "must be never, every_few_hours, daily or weekly"})
		}
	}
	if in.Timezone != nil {
		if _, err := time.LoadLocation(*in.Timezone); err != nil || *in.Timezone == "" || *in.Timezone == "Local" {
			errs = append(errs, events.FieldError{Field: "timezone", Message: "must be an IANA time zone such as Europe/Paris or UTC"})
		} else {
			p.Timezone = *in.Timezone
		}
	}
	return p, errs
}

func (a *API) putPreferences(w http.ResponseWriter, r *http.Request) {
	tenant, user, ok := a.writingUser(w, r)
	if !ok {
		return
	}
	body, ok := httpapi.ReadJSON(w, r, 4<<10)
	if !ok {
		return
	}
	p, errs := ParsePreferences(body)
	if len(errs) > 0 {
		httpapi.ValidationFailed(w, "the preferences are not valid", errs)
		return
	}
	if err := a.store.SetPreferences(r.Context(), tenant, user, p); err != nil {
		a.unavailable(w, r, "storing preferences", err)
		return
	}
	httpapi.JSON(w, http.StatusOK, p)
}

var unsubscribeHTML = template.Must(template.New("unsubscribe").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Unsubscribe</title></head>
<body style="font-family: sans-serif">{{if .Done}}
<p>You are unsubscribed: no more notification digests will be emailed to you.</p>{{else}}
<p>Stop receiving notification digests by email?</p>
<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click"><button type="submit">Unsubscribe</button></form>{{end}}
</body></html>
`))

// unsubscribePage shows a confirmation (GET must not unsubscribe: mail
// scanners follow links).
func (a *API) unsubscribePage(w http.ResponseWriter, r *http.Request) {
	if _, _, err := parseUnsubscribeToken(a.secret, r.PathValue("token")); err != nil {
		httpapi.Error(w, http.StatusNotFound, err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = unsubscribeHTML.Execute(w, map[string]bool{"Done": false})
}

// unsubscribe is the RFC 8058 one-click POST (and the page's form).
func (a *API) unsubscribe(w http.ResponseWriter, r *http.Request) {
	tenant, user, err := parseUnsubscribeToken(a.secret, r.PathValue("token"))
	if err != nil {
		httpapi.Error(w, http.StatusNotFound, err.Error())
		return
	}
	if err := a.store.Unsubscribe(r.Context(), tenant, user); err != nil {
		a.unavailable(w, r, "unsubscribing", err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = unsubscribeHTML.Execute(w, map[string]bool{"Done": true})
}

// decodeStrict decodes one JSON object, refusing unknown fields and
// trailing data.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}
