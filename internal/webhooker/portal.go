package webhooker

import (
	"context"
	"embed"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/httpapi"
	"github.com/eventline/eventline/internal/signedtoken"
	"github.com/eventline/eventline/pkg/events"
)

// PortalTokenPrefix starts every webhook portal token.
const PortalTokenPrefix = "elp_"

// Portal token lifetimes (docs/portal.md).
const (
	DefaultPortalTTL = time.Hour
	MaxPortalTTL     = 12 * time.Hour
	minPortalTTL     = time.Minute
)

//go:embed portal
var portalFiles embed.FS

// PortalKeys is what the portal needs of the API key store
// (*apikey.Store): authenticating the admin key that mints a token, and
// checking on every use of a token that the key which minted it still
// stands.
type PortalKeys interface {
	httpapi.Authenticator
	Get(ctx context.Context, id string) (apikey.Key, error)
}

// portalClaims are what a portal token carries: its tenant and the admin
// key that minted it.
type portalClaims struct {
	Tenant string `json:"t"`
	KeyID  string `json:"k"`
}

// PortalConfig configures the portal.
type PortalConfig struct {
	// SigningKey signs portal tokens (at least 32 bytes); every replica
	// needs the same one. The webhooker derives it from
	// EVENTLINE_SECRET_KEY.
	SigningKey []byte
	// PublicURL is the base URL browsers reach the webhooker at, for the
	// portal URL a new token comes with; "" derives it from the request.
	PublicURL string
	// FrameAncestors is who may embed the portal in a frame (a CSP source
	// list); default "*": the token, not the framing page, is what grants
	// access.
	FrameAncestors string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Portal is the tenant webhook portal (docs/portal.md): an embeddable page
// through which a tenant's admins manage their endpoints with the webhook
// API, authorized by a short-lived token minted with an admin key.
type Portal struct {
	keys   PortalKeys
	signer *signedtoken.Signer
	cfg    PortalConfig
	log    *slog.Logger
}

// NewPortal returns the portal over keys.
func NewPortal(keys PortalKeys, cfg PortalConfig, log *slog.Logger) (*Portal, error) {
	signer, err := signedtoken.New(cfg.SigningKey, PortalTokenPrefix, cfg.Now)
	if err != nil {
		return nil, err
	}
	if cfg.FrameAncestors == "" {
		cfg.FrameAncestors = "*"
	}
	cfg.PublicURL = strings.TrimSuffix(cfg.PublicURL, "/")
	return &Portal{keys: keys, signer: signer, cfg: cfg, log: log}, nil
}

// Routes registers the token endpoint and the page. Only an API key with
// the admin scope mints a token: a portal token cannot mint another.
func (p *Portal) Routes(mux httpapi.Router) {
	mux.Handle("POST /v1/portal-tokens", httpapi.RequireScope(p.keys, apikey.ScopeAdmin, http.HandlerFunc(p.mint)))
	files, _ := fs.Sub(portalFiles, "portal")
	page := httpapi.Page(files, "/portal", p.cfg.FrameAncestors)
	mux.Handle("GET /portal", page)
	mux.Handle("GET /portal/{file}", page)
}

// Authenticate accepts what the webhook API accepts from a browser or a
// program: an API key, or a portal token. A token is accepted while its
// signature verifies, it has not expired, and the admin key that minted it
// is still active for the same tenant; it then acts as that tenant's admin
// on the webhook API (and nowhere else: no other service knows the
// token). Anything else is apikey.ErrInvalid.
func (p *Portal) Authenticate(ctx context.Context, plaintext string) (apikey.Key, error) {
	if !strings.HasPrefix(plaintext, PortalTokenPrefix) {
		return p.keys.Authenticate(ctx, plaintext)
	}
	var c portalClaims
	if _, err := p.signer.Verify(plaintext, &c); err != nil {
		return apikey.Key{}, apikey.ErrInvalid
	}
	k, err := p.keys.Get(ctx, c.KeyID)
	if err != nil {
		return apikey.Key{}, err
	}
	if k.Tenant != c.Tenant || !k.Allows(apikey.ScopeAdmin) {
		return apikey.Key{}, apikey.ErrInvalid
	}
	return apikey.Key{ID: k.ID, Tenant: k.Tenant, Scopes: []string{apikey.ScopeAdmin}, Description: "webhook portal token"}, nil
}

func (p *Portal) mint(w http.ResponseWriter, r *http.Request) {
	key, _ := httpapi.KeyFrom(r.Context())
	var in struct {
		TTLSeconds *int `json:"ttl_seconds"`
	}
	if r.ContentLength != 0 && !decodeJSON(w, r, &in) {
		return
	}
	ttl := DefaultPortalTTL
	if in.TTLSeconds != nil {
		ttl = time.Duration(*in.TTLSeconds) * time.Second
		if ttl < minPortalTTL || ttl > MaxPortalTTL {
			httpapi.ValidationFailed(w, "ttl_seconds is out of range; no token was made", []events.FieldError{{Field: "ttl_seconds",
				Message: "must be from 60 to 43200 (12 hours); default 3600"}})
			return
		}
	}
	token, expires, err := p.signer.Mint(portalClaims{Tenant: key.Tenant, KeyID: key.ID}, ttl)
	if err != nil {
		p.log.ErrorContext(r.Context(), "mint portal token", "error", err)
		httpapi.Unavailable(w, time.Second, "could not make a token right now; retry")
		return
	}
	httpapi.JSON(w, http.StatusCreated, map[string]any{
		"token":      token,
		"url":        p.base(r) + "/portal#token=" + token,
		"expires_at": expires.UTC(),
		"tenant":     key.Tenant,
	})
}

// base is the configured public URL, else the one the request came to.
func (p *Portal) base(r *http.Request) string {
	if p.cfg.PublicURL != "" {
		return p.cfg.PublicURL
	}
	scheme := "http"
	if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
		scheme = "https"
	}
	host := r.Host
	if h := r.Header.Get("X-Forwarded-Host"); h != "" {
		host = h
	}
	return scheme + "://" + host
}
