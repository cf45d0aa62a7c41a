package projector

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/eventline/eventline/internal/deadletter"
	"github.com/eventline/eventline/internal/httpapi"
	"github.com/eventline/eventline/pkg/events"
)

// rejectedPage is the body of GET /v1/rejected-events.
type rejectedPage struct {
	RejectedEvents []deadletter.Rejection `json:"rejected_events"`
	NextCursor     *string                `json:"next_cursor"`
}

// rejected serves GET /v1/rejected-events: the messages published on the
// tenant's subjects that failed validation, newest first (docs/rejections.md).
func (a *API) rejected(w http.ResponseWriter, r *http.Request) {
	key, _ := httpapi.KeyFrom(r.Context())
	q, errs := parseRejectedQuery(r.URL.Query(), key.Tenant)
	if len(errs) > 0 {
		httpapi.WriteProblem(w, httpapi.Problem{Type: httpapi.TypeValidation, Title: "Invalid parameters", Status: http.StatusBadRequest,
			Detail: "fix the listed parameters", Errors: errs})
		return
	}
	limit := q.Limit
	q.Limit++ // one more tells whether there is a next page
	rs, err := deadletter.ListRejections(r.Context(), a.store.pool, q)
	if err != nil {
		a.log.ErrorContext(r.Context(), "rejected events query failed", "error", err)
		httpapi.Unavailable(w, time.Second, "the rejected events cannot be read right now; retry")
		return
	}
	page := rejectedPage{RejectedEvents: rs}
	if len(rs) > limit {
		page.RejectedEvents = rs[:limit]
		last := rs[limit-1]
		c := encodeCursorOf(cursorRejected, key.Tenant, last.StreamTime, last.Seq)
		page.NextCursor = &c
	}
	if page.RejectedEvents == nil {
		page.RejectedEvents = []deadletter.Rejection{}
	}
	httpapi.JSON(w, http.StatusOK, page)
}

var rejectedParams = []string{"limit", "cursor", "since", "status"}

// parseRejectedQuery reads the parameters of GET /v1/rejected-events,
// naming every bad one.
func parseRejectedQuery(v url.Values, tenant string) (deadletter.RejectionQuery, []events.FieldError) {
	q := deadletter.RejectionQuery{Tenant: tenant}
	var errs []events.FieldError
	bad := func(field, format string, args ...any) {
		errs = append(errs, events.FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	q.Limit = listParams(v, rejectedParams, "", bad)
	if s := v.Get("cursor"); s != "" {
		c, err := decodeCursorOf(cursorRejected, s, tenant)
		if err != nil {
			bad("cursor", "%s", err.Error())
		} else {
			q.Before = &deadletter.Position{StreamTime: c.time(), Seq: uint64(c.Seq)}
		}
	}
	if s := v.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			bad("since", "must be an RFC 3339 time such as 2026-11-25T10:00:00Z")
		} else {
			q.Since = t
		}
	}
	switch v.Get("status") {
	case "", "pending":
	case "all":
		q.IncludeReplayed = true
	default:
		bad("status", "must be pending (the default: not replayed yet) or all")
	}
	slices.SortStableFunc(errs, func(a, b events.FieldError) int { return strings.Compare(a.Field, b.Field) })
	return q, errs
}
