package projector

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/eventline/eventline/internal/httpapi"
	"github.com/eventline/eventline/pkg/events"
)

// TestAppendPageMatchesJSON holds the timeline page written without
// reflection to what httpapi.JSON writes for the same page, byte for byte,
// with events that take the fast path and events that need escaping.
func TestAppendPageMatchesJSON(t *testing.T) {
	at := time.Date(2026, 12, 6, 3, 20, 1, 123456000, time.FixedZone("CET", 3600))
	plain := events.Event{ID: "ev-1", Tenant: "acme", Type: "card.closed", Action: "closed", Seq: 42,
		Eventable: events.Ref{Type: "card", ID: "c42"}, Creator: events.Ref{Type: "user", ID: "u7"},
		Parents:     []events.Ref{{Type: "board", ID: "b1"}, {Type: "account", ID: "a1"}},
		Particulars: json.RawMessage(`{"title": "Fix the login page", "n": [1, 2.5e3], "nested": {"a": null}}`),
		OccurredAt:  at, RecordedAt: at.Add(time.Second)}
	noParents := plain
	noParents.ID, noParents.Parents, noParents.Particulars, noParents.Seq = "ev-2", nil, nil, 0
	unicode := plain
	unicode.ID, unicode.Particulars = "ev-3", json.RawMessage(`{"who": "Zoë", "ls": "\u2028"}`)
	html := plain
	html.ID, html.Particulars = "ev-4", json.RawMessage(`{"html": "<b>&amp;</b>"}`)
	quoted := plain
	quoted.ID, quoted.Eventable.ID, quoted.Creator.ID = "ev-5", `c"q\`, "Zoë"
	cursor := encodeCursor("acme", at, 42)
	for name, page := range map[string]Page{
		"empty":         {Events: []events.Event{}},
		"plain":         {Events: []events.Event{plain, noParents}},
		"with a cursor": {Events: []events.Event{plain}, NextCursor: &cursor},
		"mixed":         {Events: []events.Event{plain, unicode, html, quoted, noParents}, NextCursor: &cursor},
	} {
		t.Run(name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			httpapi.JSON(rec, 200, page)
			got, ok := appendPage([]byte("prefix"), page)
			if !ok {
				t.Fatal("appendPage refused the page")
			}
			if !bytes.HasPrefix(got, []byte("prefix")) {
				t.Fatalf("appendPage lost what dst held: %q", got)
			}
			if got = got[len("prefix"):]; !bytes.Equal(got, rec.Body.Bytes()) {
				t.Fatalf("appendPage\n got %s\nwant %s", got, rec.Body.Bytes())
			}
		})
	}
}

// BenchmarkPageEncode writes a page of 200 events, as GET
// /v1/activity?limit=200 answers it, by encoding/json (httpapi.JSON, the
// baseline) and by appendPage.
func BenchmarkPageEncode(b *testing.B) {
	page := Page{Events: make([]events.Event, 200)}
	at := time.Date(2026, 12, 6, 3, 20, 1, 123456000, time.UTC)
	for i := range page.Events {
		page.Events[i] = events.Event{ID: "0193a1b2-7c3d-7e4f-8a9b-" + strconv.Itoa(100000000000+i), Tenant: "acme", Type: "card.moved",
			Action: "moved", Seq: uint64(1000 + i), Eventable: events.Ref{Type: "card", ID: "card" + strconv.Itoa(i)},
			Creator: events.Ref{Type: "user", ID: "u7"}, Parents: []events.Ref{{Type: "board", ID: "b1"}, {Type: "account", ID: "a1"}},
			// jsonb's text form, as Postgres returns it: a space after every ':' and ','
			Particulars: json.RawMessage(`{"to": "Doing", "from": "Todo", "title": "Fix the login page on Safari", "column_id": "col3"}`),
			OccurredAt:  at.Add(time.Duration(i) * time.Millisecond), RecordedAt: at.Add(time.Duration(i)*time.Millisecond + 3*time.Millisecond)}
	}
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			rec := httptest.NewRecorder()
			httpapi.JSON(rec, 200, page)
		}
	})
	b.Run("appendPage", func(b *testing.B) {
		for b.Loop() {
			rec := httptest.NewRecorder()
			body, _ := appendPage(make([]byte, 0, 64+len(page.Events)*512), page)
			httpapi.JSONBytes(rec, 200, body)
		}
	})
}
