package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/eventline/eventline/internal/apikey"
)

// Authenticator resolves a presented API key. *apikey.Store implements it.
type Authenticator interface {
	Authenticate(ctx context.Context, plaintext string) (apikey.Key, error)
}

type keyCtx struct{}

// KeyFrom returns the authenticated key of a request passed by RequireScope.
func KeyFrom(ctx context.Context) (apikey.Key, bool) {
	k, ok := ctx.Value(keyCtx{}).(apikey.Key)
	return k, ok
}

// WithKey returns ctx carrying key, as RequireScope passes it on; for
// other ways in (a user token) that act for the key's tenant.
func WithKey(ctx context.Context, key apikey.Key) context.Context {
	return context.WithValue(ctx, keyCtx{}, key)
}

// RequireScope authenticates "Authorization: Bearer <key>" and answers 401
// without a valid key and 403 when the key lacks scope. The key reaches
// next through the request context (KeyFrom).
func RequireScope(auth Authenticator, scope string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		token, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || token == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="eventline"`)
			Error(w, http.StatusUnauthorized, "send an API key as 'Authorization: Bearer <key>'; create one with `eventline keys create --tenant T`")
			return
		}
		key, err := auth.Authenticate(r.Context(), strings.TrimSpace(token))
		switch {
		case errors.Is(err, apikey.ErrInvalid):
			w.Header().Set("WWW-Authenticate", `Bearer realm="eventline", error="invalid_token"`)
			Error(w, http.StatusUnauthorized, "the API key is not valid: it is unknown, revoked or mistyped")
			return
		case err != nil:
			Unavailable(w, 0, "cannot check the API key right now; retry")
			return
		}
		if !key.Allows(scope) {
			Error(w, http.StatusForbidden, "this API key lacks the '"+scope+"' scope; create a key with --scopes "+scope)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), keyCtx{}, key)))
	})
}
