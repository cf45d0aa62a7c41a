package browser

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/httpapi"
	"github.com/eventline/eventline/pkg/events"
)

// API serves POST /v1/user-tokens (read scope: an application's backend
// mints a token for the signed-in user and hands it to the page) and
// GET /v1/browser-origins (read scope) and PUT (admin scope), and the CORS preflights of
// the paths tokens open.
type API struct {
	guard   *Guard
	tokens  *Signer
	origins *Origins
	log     *slog.Logger
}

// NewAPI returns the API; tokens nil answers 503 to minting.
func NewAPI(guard *Guard, tokens *Signer, origins *Origins, log *slog.Logger) *API {
	return &API{guard: guard, tokens: tokens, origins: origins, log: log}
}

// Routes registers the endpoints on mux. preflights are the path patterns
// (such as "/v1/users/{user_id}/notifications") whose OPTIONS requests the
// Guard answers.
func (a *API) Routes(mux httpapi.Router, preflights ...string) {
	mux.Handle("POST /v1/user-tokens", httpapi.RequireScope(a.guard.keys, apikey.ScopeRead, http.HandlerFunc(a.mint)))
	mux.Handle("GET /v1/browser-origins", httpapi.RequireScope(a.guard.keys, apikey.ScopeRead, http.HandlerFunc(a.getOrigins)))
	mux.Handle("PUT /v1/browser-origins", httpapi.RequireScope(a.guard.keys, apikey.ScopeAdmin, http.HandlerFunc(a.putOrigins)))
	for _, p := range preflights {
		mux.Handle("OPTIONS "+p, a.guard.Preflight())
	}
}

// MintRequest is the body of POST /v1/user-tokens.
type MintRequest struct {
	UserID     string       `json:"user_id"`
	TTLSeconds int          `json:"ttl_seconds,omitempty"`
	Scopes     []string     `json:"scopes,omitempty"`
	Timelines  []events.Ref `json:"timelines,omitempty"`
}

// MintResponse is the answer to POST /v1/user-tokens.
type MintResponse struct {
	Token     string       `json:"token"`
	UserID    string       `json:"user_id"`
	Scopes    []string     `json:"scopes"`
	Timelines []events.Ref `json:"timelines,omitempty"`
	ExpiresAt time.Time    `json:"expires_at"`
}

// ParseMint validates a mint request body and returns the claims (without
// tenant and expiry) and the lifetime, or every error by field path.
func ParseMint(body []byte) (Claims, time.Duration, []events.FieldError) {
	if errs := events.CheckStorable(body, "body"); len(errs) > 0 {
		return Claims{}, 0, errs
	}
	var in MintRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return Claims{}, 0, []events.FieldError{{Field: "body", Message: err.Error() + `; send {"user_id", "ttl_seconds"?, "scopes"?, "timelines"?}`}}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Claims{}, 0, []events.FieldError{{Field: "body", Message: "unexpected data after the JSON object"}}
	}
	var errs []events.FieldError
	if in.UserID == "" {
		errs = append(errs, events.FieldError{Field: "user_id", Message: "is required: the user the token acts for"})
	} else {
		errs = append(errs, events.CheckRefID("user_id", in.UserID)...)
	}
	ttl := DefaultTTL
	if in.TTLSeconds != 0 {
		ttl = time.Duration(in.TTLSeconds) * time.Second
		if in.TTLSeconds < 10 || ttl > MaxTTL {
			errs = append(errs, events.FieldError{Field: "ttl_seconds", Message: fmt.Sprintf("must be from 10 to %d seconds", int(MaxTTL/time.Second))})
		}
	}
	scopes := in.Scopes
	if len(scopes) == 0 {
		scopes = []string{ScopeInbox}
		if len(in.Timelines) > 0 {
			scopes = append(scopes, ScopeTimeline)
		}
	}
	for i, s := range scopes {
		if s != ScopeInbox && s != ScopeTimeline {
			errs = append(errs, events.FieldError{Field: fmt.Sprintf("scopes[%d]", i), Message: "must be inbox or timeline"})
		}
	}
	if len(in.Timelines) > MaxTimelines {
		errs = append(errs, events.FieldError{Field: "timelines", Message: fmt.Sprintf("at most %d timelines", MaxTimelines)})
	}
	for i, r := range in.Timelines {
		errs = append(errs, events.CheckRef(fmt.Sprintf("timelines[%d]", i), r)...)
	}
	if slices.Contains(scopes, ScopeTimeline) && len(in.Timelines) == 0 {
		errs = append(errs, events.FieldError{Field: "timelines", Message: "the timeline scope needs the timelines the page may read, e.g. [{\"type\":\"board\",\"id\":\"b1\"}]"})
	}
	slices.Sort(scopes)
	return Claims{User: in.UserID, Scopes: slices.Compact(scopes), Timelines: in.Timelines}, ttl, errs
}

func (a *API) mint(w http.ResponseWriter, r *http.Request) {
	if a.tokens == nil {
		httpapi.Unavailable(w, 0, "user tokens are not enabled on this server: the operator sets USER_TOKEN_SECRET")
		return
	}
	key, _ := httpapi.KeyFrom(r.Context())
	body, ok := httpapi.ReadJSON(w, r, 16<<10)
	if !ok {
		return
	}
	c, ttl, errs := ParseMint(body)
	if len(errs) > 0 {
		httpapi.ValidationFailed(w, "the token request is not valid", errs)
		return
	}
	c.Tenant = key.Tenant
	exp := a.tokens.now().Add(ttl).Truncate(time.Second)
	c.Expires = exp.Unix()
	tok, err := a.tokens.Mint(c)
	if err != nil {
		httpapi.Unavailable(w, 0, "cannot mint a token right now; retry")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	httpapi.JSON(w, http.StatusCreated, MintResponse{Token: tok, UserID: c.User, Scopes: c.Scopes, Timelines: c.Timelines, ExpiresAt: exp.UTC()})
}

type originsBody struct {
	Origins []string `json:"origins"`
}

func (a *API) getOrigins(w http.ResponseWriter, r *http.Request) {
	key, _ := httpapi.KeyFrom(r.Context())
	list, err := a.origins.Of(r.Context(), key.Tenant)
	if err != nil {
		a.log.ErrorContext(r.Context(), "reading browser origins failed", "error", err)
		httpapi.Unavailable(w, time.Second, "reading the origins is not possible right now; retry")
		return
	}
	if list == nil {
		list = []string{}
	}
	httpapi.JSON(w, http.StatusOK, originsBody{Origins: list})
}

func (a *API) putOrigins(w http.ResponseWriter, r *http.Request) {
	key, _ := httpapi.KeyFrom(r.Context())
	body, ok := httpapi.ReadJSON(w, r, 16<<10)
	if !ok {
		return
	}
	var in originsBody
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil || in.Origins == nil {
		httpapi.ValidationFailed(w, "the origins are not valid", []events.FieldError{{Field: "body", Message: `send {"origins": ["https://app.example.com"]} ([] allows none)`}})
		return
	}
	clean, errs := ParseOrigins(in.Origins)
	if len(errs) > 0 {
		httpapi.ValidationFailed(w, "the origins are not valid; nothing was changed", errs)
		return
	}
	if err := a.origins.Set(r.Context(), key.Tenant, clean); err != nil {
		a.log.ErrorContext(r.Context(), "storing browser origins failed", "error", err)
		httpapi.Unavailable(w, time.Second, "storing the origins is not possible right now; retry")
		return
	}
	httpapi.JSON(w, http.StatusOK, originsBody{Origins: clean})
}
