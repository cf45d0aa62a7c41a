package browser

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/httpapi"
	"github.com/eventline/eventline/pkg/events"
)

// Guard admits a request with an API key (httpapi.RequireScope) or with a
// user token, presented as "Authorization: Bearer elu_…" or as the query
// parameter token= (which EventSource can send; it is taken out of the
// URL before the handler runs, and eventline never logs URLs). A request
// admitted by token gets CORS headers when its Origin is one its tenant
// configured; a request with an API key never does (keys stay on servers).
type Guard struct {
	keys    httpapi.Authenticator
	tokens  *Signer  // nil: tokens are refused
	origins *Origins // nil: no origin is allowed
	log     *slog.Logger
}

// NewGuard returns a Guard. Without tokens (USER_TOKEN_SECRET unset) only
// API keys are accepted.
func NewGuard(keys httpapi.Authenticator, tokens *Signer, origins *Origins, log *slog.Logger) *Guard {
	return &Guard{keys: keys, tokens: tokens, origins: origins, log: log}
}

// Permit decides whether verified claims may make request r.
type Permit func(c Claims, r *http.Request) (ok bool, why string)

// OwnInbox permits a token with the inbox scope on the paths of its own
// user (/v1/users/{user_id}/…).
func OwnInbox(c Claims, r *http.Request) (bool, string) {
	if !c.Allows(ScopeInbox) {
		return false, "this user token does not grant the inbox; mint one with the inbox scope"
	}
	if r.PathValue("user_id") != c.User {
		return false, "this user token is for another user: a token reads only its own user's inbox"
	}
	return true, ""
}

// ListedTimeline permits a token on GET /v1/timelines/{type}/{id} when it
// lists that timeline.
func ListedTimeline(c Claims, r *http.Request) (bool, string) {
	if !c.AllowsTimeline(events.Ref{Type: r.PathValue("type"), ID: r.PathValue("id")}) {
		return false, "this user token does not grant this timeline; list it in timelines when minting the token"
	}
	return true, ""
}

type claimsCtx struct{}

// ClaimsFrom returns the claims of a request admitted by token.
func ClaimsFrom(ctx context.Context) (Claims, bool) {
	c, ok := ctx.Value(claimsCtx{}).(Claims)
	return c, ok
}

// Allow admits an API key with scope, or a user token that permit
// accepts. Handlers read the tenant from httpapi.KeyFrom either way.
func (g *Guard) Allow(scope string, permit Permit, next http.Handler) http.Handler {
	byKey := httpapi.RequireScope(g.keys, scope, next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, fromQuery := presented(r)
		if token == "" && !fromQuery {
			byKey.ServeHTTP(w, r)
			return
		}
		if fromQuery {
			stripToken(r)
		}
		if g.tokens == nil {
			g.corsUnknownTenant(w, r)
			httpapi.Error(w, http.StatusUnauthorized, "user tokens are not enabled on this server: the operator sets USER_TOKEN_SECRET")
			return
		}
		c, err := g.tokens.Verify(token)
		if err != nil {
			g.corsUnknownTenant(w, r)
			w.Header().Set("WWW-Authenticate", `Bearer realm="eventline", error="invalid_token"`)
			detail := "the user token is not valid: mint a new one with POST /v1/user-tokens"
			if errors.Is(err, ErrExpired) {
				detail = "the user token has expired: mint a new one with POST /v1/user-tokens"
			}
			httpapi.Error(w, http.StatusUnauthorized, detail)
			return
		}
		if err := g.cors(w, r, c.Tenant); err != nil {
			g.log.WarnContext(r.Context(), "cannot read browser origins", "error", err)
			httpapi.Unavailable(w, 0, "cannot check the page's origin right now; retry")
			return
		}
		if ok, why := permit(c, r); !ok {
			httpapi.Error(w, http.StatusForbidden, why)
			return
		}
		ctx := context.WithValue(r.Context(), claimsCtx{}, c)
		next.ServeHTTP(w, r.WithContext(httpapi.WithKey(ctx, apikey.Key{ID: "user-token", Tenant: c.Tenant})))
	})
}

// presented returns the user token of r, if any: an Authorization bearer
// that looks like one, else the token query parameter.
func presented(r *http.Request) (token string, fromQuery bool) {
	if b, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && LooksLikeToken(strings.TrimSpace(b)) {
		return strings.TrimSpace(b), false
	}
	if q := r.URL.Query(); q.Has("token") {
		return q.Get("token"), true
	}
	return "", false
}

// stripToken removes token= from the URL, so that handlers that refuse
// unknown parameters do not see it and nothing downstream logs it.
func stripToken(r *http.Request) {
	q := r.URL.Query()
	q.Del("token")
	r.URL.RawQuery = q.Encode()
}

// cors sets the CORS response headers when r's Origin is one of tenant's.
func (g *Guard) cors(w http.ResponseWriter, r *http.Request, tenant string) error {
	origin := r.Header.Get("Origin")
	if origin == "" || g.origins == nil {
		return nil
	}
	w.Header().Add("Vary", "Origin") // the answer's headers depend on it, allowed or not
	ok, err := g.origins.Allowed(r.Context(), tenant, origin)
	if err != nil {
		return err
	}
	if ok {
		allowOrigin(w, origin)
	}
	return nil
}

// corsUnknownTenant lets a page read a refusal when some tenant lists its
// origin: the token that would name the tenant is what was refused.
func (g *Guard) corsUnknownTenant(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	if origin == "" || g.origins == nil {
		return
	}
	if ok, err := g.origins.Registered(r.Context(), origin); err == nil && ok {
		allowOrigin(w, origin)
	}
}

func allowOrigin(w http.ResponseWriter, origin string) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	if h.Get("Vary") == "" {
		h.Add("Vary", "Origin")
	}
	h.Set("Access-Control-Expose-Headers", "Retry-After, Content-Type")
}

// Preflight answers CORS preflight requests (OPTIONS) for the paths a
// token may use. With a token in the URL the origin must be one of the
// token's tenant; without one (a token sent in Authorization), one that
// some tenant configured, and the request itself is checked against its
// tenant. Anything else is 403 without CORS headers, which the browser
// reports as a CORS failure.
func (g *Guard) Preflight() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" || r.Header.Get("Access-Control-Request-Method") == "" || g.origins == nil {
			httpapi.Error(w, http.StatusForbidden, "not a CORS preflight from a configured origin: a tenant admin lists origins with PUT /v1/browser-origins")
			return
		}
		var ok bool
		var err error
		if token, fromQuery := presented(r); fromQuery && g.tokens != nil {
			c, verr := g.tokens.Verify(token)
			if verr == nil {
				ok, err = g.origins.Allowed(r.Context(), c.Tenant, origin)
			}
		} else {
			ok, err = g.origins.Registered(r.Context(), origin)
		}
		if err != nil {
			httpapi.Unavailable(w, 0, "cannot check the page's origin right now; retry")
			return
		}
		if !ok {
			httpapi.Error(w, http.StatusForbidden, "origin "+origin+" is not configured for this tenant: a tenant admin lists it with PUT /v1/browser-origins")
			return
		}
		allowOrigin(w, origin)
		h := w.Header()
		h.Set("Access-Control-Allow-Methods", "GET, POST")
		h.Set("Access-Control-Allow-Headers", "Authorization, Last-Event-ID, Content-Type")
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
	})
}

// Setup returns the Guard and the API of one service over pool: user
// tokens are accepted when secret (USER_TOKEN_SECRET) is set, and refused
// with a message naming the setting when it is empty.
func Setup(pool *pgxpool.Pool, keys httpapi.Authenticator, secret string, log *slog.Logger) (*Guard, *API, error) {
	var signer *Signer
	if secret != "" {
		s, err := NewSigner(secret)
		if err != nil {
			return nil, nil, err
		}
		signer = s
	}
	origins := NewOrigins(pool)
	g := NewGuard(keys, signer, origins, log)
	return g, NewAPI(g, signer, origins, log), nil
}
