package notifier

import (
	"errors"
	"net/http"

	"github.com/jackc/pgx/v5"

	"github.com/eventline/eventline/internal/httpapi"
	"github.com/eventline/eventline/pkg/events"
)

// previewDigest serves GET /v1/digests/preview?user=<id>[&format=html|text]:
// the digest the user would get now for the window that is open (every
// unread notification, when none is), composed exactly as it would be
// mailed, without sending it or closing the window. JSON by default
// ({"user", "to", "subject", "text", "html", "notifications", "window_open"}); format=html
// answers the HTML body itself, for a look in a browser.
func (a *API) previewDigest(w http.ResponseWriter, r *http.Request) {
	key, _ := httpapi.KeyFrom(r.Context())
	q := r.URL.Query()
	user := q.Get("user")
	var errs []events.FieldError
	for name := range q {
		if name != "user" && name != "format" {
			errs = append(errs, events.FieldError{Field: name, Message: "is not a parameter; use user, format"})
		}
	}
	if user == "" {
		errs = append(errs, events.FieldError{Field: "user", Message: "is required: the user whose next digest to show"})
	} else {
		errs = append(errs, events.CheckRefID("user", user)...)
	}
	format := q.Get("format")
	if format != "" && format != "json" && format != "html" && format != "text" {
		errs = append(errs, events.FieldError{Field: "format", Message: "must be json, html or text"})
	}
	if len(errs) > 0 {
		badParams(w, errs)
		return
	}
	ctx := r.Context()
	pref, err := getPreferences(ctx, a.store.pool, key.Tenant, user)
	if err != nil {
		a.unavailable(w, r, "reading preferences", err)
		return
	}
	d := digest{tenant: key.Tenant, userID: user}
	err = a.store.pool.QueryRow(ctx, `SELECT after_seq FROM notify.digests
		WHERE tenant = $1 AND user_id = $2 AND status = 'pending' ORDER BY ends_at LIMIT 1`, key.Tenant, user).Scan(&d.afterSeq)
	open := err == nil
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		a.unavailable(w, r, "reading the digest window", err)
		return
	}
	items, _, err := digestItems(ctx, a.store.pool, d)
	if err != nil {
		a.unavailable(w, r, "reading the digest's notifications", err)
		return
	}
	set, err := a.sentences.For(ctx, key.Tenant)
	if err != nil {
		a.log.WarnContext(ctx, "cannot read the tenant's sentence templates; using the built-in ones", "error", err)
	}
	m, err := a.digest.compose(set, key.Tenant, user, loadLocation(pref.Timezone), items)
	if err != nil {
		a.unavailable(w, r, "composing the digest", err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	switch format {
	case "html":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(m.HTML))
	case "text":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("Subject: " + m.Subject + "\n\n" + m.Text))
	default:
		httpapi.JSON(w, http.StatusOK, map[string]any{"user": user, "to": pref.Email, "digest": pref.Digest, "window_open": open,
			"notifications": len(items), "subject": m.Subject, "text": m.Text, "html": m.HTML})
	}
}
