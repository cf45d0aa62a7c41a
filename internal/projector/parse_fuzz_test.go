package projector

import (
	"net/url"
	"testing"
	"time"
)

// FuzzCursor: no input panics, only cursors of the right tenant decode,
// and an issued cursor decodes to its position.
func FuzzCursor(f *testing.F) {
	f.Add(encodeCursor("acme", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), 42), "acme")
	f.Add("eyJ2IjoxfQ", "acme")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, s, tenant string) {
		c, err := decodeCursor(s, tenant)
		if err != nil {
			return
		}
		if c.Tenant != tenant || c.Version != 1 || c.Seq < 0 {
			t.Fatalf("accepted %+v for tenant %q", c, tenant)
		}
		again, err := decodeCursor(encodeCursor(tenant, c.time(), uint64(c.Seq)), tenant)
		if err != nil || again.OccurredAt != c.OccurredAt || again.Seq != c.Seq {
			t.Fatalf("round trip of %+v: %+v %v", c, again, err)
		}
	})
}

// FuzzParseQuery: any query string either yields named errors or a query
// whose SQL builds.
func FuzzParseQuery(f *testing.F) {
	f.Add("limit=10&action=card.closed,moved&creator=user:u7&since=2026-01-01T00:00:00Z")
	f.Add("limit=0&cursor=!!&eventable_type=Card")
	f.Add("action=,,&until=2026-01-01T00:00:00Z&since=2027-01-01T00:00:00Z")
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, errs := parseQuery(v, "acme")
		for _, e := range errs {
			if e.Field == "" || e.Message == "" {
				t.Fatalf("error without field or message: %+v", e)
			}
		}
		if len(errs) > 0 {
			return
		}
		if q.Limit < 1 || q.Limit > 200 || q.Tenant != "acme" {
			t.Fatalf("accepted %+v", q)
		}
		if sql, args := q.sql(1); sql == "" || len(args) == 0 {
			t.Fatalf("no SQL for %+v", q)
		}
	})
}
