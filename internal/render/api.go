package render

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/httpapi"
	"github.com/eventline/eventline/pkg/events"
)

// API serves a tenant's sentence templates: GET /v1/sentence-templates
// (read scope) answers {"templates": {type: template}, "builtin": {...},
// "generic": "..."}; PUT (admin) replaces the tenant's templates with
// {"templates": {...}}; DELETE (admin) goes back to the built-in ones.
type API struct {
	store *Store
	auth  httpapi.Authenticator
	log   *slog.Logger
}

// NewAPI returns the templates API.
func NewAPI(store *Store, auth httpapi.Authenticator, log *slog.Logger) *API {
	return &API{store: store, auth: auth, log: log}
}

// Routes registers the endpoints on mux.
func (a *API) Routes(mux httpapi.Router) {
	mux.Handle("GET /v1/sentence-templates", httpapi.RequireScope(a.auth, apikey.ScopeRead, http.HandlerFunc(a.get)))
	mux.Handle("PUT /v1/sentence-templates", httpapi.RequireScope(a.auth, apikey.ScopeAdmin, http.HandlerFunc(a.put)))
	mux.Handle("DELETE /v1/sentence-templates", httpapi.RequireScope(a.auth, apikey.ScopeAdmin, http.HandlerFunc(a.reset)))
}

type templatesBody struct {
	Templates map[string]string `json:"templates"`
	Builtin   map[string]string `json:"builtin,omitempty"`
	Generic   string            `json:"generic,omitempty"`
}

func (a *API) answer(w http.ResponseWriter, r *http.Request, tenant string) {
	own, err := a.store.Templates(r.Context(), tenant)
	if err != nil {
		a.log.ErrorContext(r.Context(), "reading sentence templates failed", "error", err)
		httpapi.Unavailable(w, time.Second, "reading the templates is not possible right now; retry")
		return
	}
	httpapi.JSON(w, http.StatusOK, templatesBody{Templates: own, Builtin: Builtin, Generic: Generic})
}

func (a *API) get(w http.ResponseWriter, r *http.Request) {
	key, _ := httpapi.KeyFrom(r.Context())
	a.answer(w, r, key.Tenant)
}

func (a *API) put(w http.ResponseWriter, r *http.Request) {
	key, _ := httpapi.KeyFrom(r.Context())
	body, ok := httpapi.ReadJSON(w, r, 256<<10)
	if !ok {
		return
	}
	if errs := events.CheckStorable(body, "body"); len(errs) > 0 {
		httpapi.ValidationFailed(w, "the body cannot be stored", errs)
		return
	}
	var in struct {
		Templates map[string]string `json:"templates"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil || in.Templates == nil {
		httpapi.ValidationFailed(w, "the templates are not valid", []events.FieldError{{Field: "body", Message: `send {"templates": {"card.moved": "{creator} moved *{title}* to {to_column}"}}`}})
		return
	}
	if errs := ParseTemplates(in.Templates); len(errs) > 0 {
		httpapi.ValidationFailed(w, "the templates are not valid; nothing was changed", errs)
		return
	}
	if err := a.store.SetTemplates(r.Context(), key.Tenant, in.Templates); err != nil {
		a.log.ErrorContext(r.Context(), "storing sentence templates failed", "error", err)
		httpapi.Unavailable(w, time.Second, "storing the templates is not possible right now; retry")
		return
	}
	a.answer(w, r, key.Tenant)
}

func (a *API) reset(w http.ResponseWriter, r *http.Request) {
	key, _ := httpapi.KeyFrom(r.Context())
	if err := a.store.SetTemplates(r.Context(), key.Tenant, nil); err != nil {
		a.log.ErrorContext(r.Context(), "resetting sentence templates failed", "error", err)
		httpapi.Unavailable(w, time.Second, "resetting the templates is not possible right now; retry")
		return
	}
	a.answer(w, r, key.Tenant)
}
