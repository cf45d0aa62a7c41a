package ingest

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/eventline/eventline/pkg/events"
)

// FuzzParseBody feeds arbitrary request bodies to the ingest parser: it must
// never panic, must either reject with named fields or accept 1..1000
// normalized events of the key's tenant with unique ids.
func FuzzParseBody(f *testing.F) {
	f.Add([]byte(`{"action":"closed","eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"}}`))
	f.Add([]byte(`{"events":[{"id":"a","action":"x","eventable":{"type":"t","id":"1"},"creator":{"type":"u","id":"2"}},{"id":"a"}]}`))
	f.Add([]byte(`{"events":[]}`))
	f.Add([]byte(`{"events":null,"x":1}`))
	f.Add([]byte(`  [ ]`))
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		es, errs := parseBody(body, "acme", now)
		if len(errs) > 0 {
			for _, fe := range errs {
				if fe.Field == "" || fe.Message == "" {
					t.Fatalf("error without a field or message: %+v", fe)
				}
			}
			return
		}
		if len(es) == 0 || len(es) > MaxEventsPerRequest {
			t.Fatalf("accepted %d events", len(es))
		}
		ids := map[string]bool{}
		for _, e := range es {
			if e.Tenant != "acme" || ids[e.ID] || e.Type != events.TypeOf(e.Eventable.Type, e.Action) {
				t.Fatalf("accepted a bad event: %+v", e)
			}
			ids[e.ID] = true
			again := e
			if err := again.Normalize(now); err != nil {
				t.Fatalf("accepted event does not validate: %v", err)
			}
		}
	})
}

// FuzzParseFastAgreesWithStrict: whatever the fast path accepts is valid
// JSON to encoding/json (the fast path makes no other syntax check: its
// storable scan is it), and the strict parser accepts it with the same
// events.
func FuzzParseFastAgreesWithStrict(f *testing.F) {
	for _, c := range []string{
		`{"events":[{"action":"x","eventable":{"type":"t","id":"1"},"creator":{"type":"u","id":"2"}}]}x`,
		`{"events":[{"action":"x","eventable":{"type":"t","id":"1"},"creator":{"type":"u","id":"2"}},]}`,
		`{"events":[{"action":"x","eventable":{"type":"t","id":"1"},"creator":{"type":"u","id":"2"}}],"events":[]}`,
		` { "events" : [ {"action":"x","eventable":{"type":"t","id":"1"},"creator":{"type":"u","id":"2"},"particulars":{"n":1e400,"s":"\ud83d\ude00"}} ] } `,
		"{\"action\":\"x\",\"eventable\":{\"type\":\"t\",\"id\":\"\xff\"},\"creator\":{\"type\":\"u\",\"id\":\"2\"}}",
		`{"action":"x","eventable":{"type":"t","id":"\ud800"},"creator":{"type":"u","id":"2"},"particulars":{"a":[[[[1]]]]}}`,
		`{"action":"x","action":"y","eventable":{"type":"t","id":"1"},"creator":{"type":"u","id":"2"}}`,
		`{"action":"x","eventable":{"type":"t","id":"1"},"eventable":{"id":"2"},"creator":{"type":"u","id":"2"}}`,
		`{"action":"x","eventable":{"type":"t","id":"1"},"creator":{"type":"u","id":"2"},"parents":[{"type":"b","id":"3"}],"parents":[{"id":"4"}]}`,
	} {
		f.Add([]byte(c))
	}
	f.Add([]byte(`{"action":"closed","eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"}}`))
	f.Add([]byte(`{"events":[{"id":"a","action":"x","eventable":{"type":"t","id":"1"},"creator":{"type":"u","id":"2"},"parents":[{"type":"b","id":"3"}],"particulars":{"a":[1,"}"]},"occurred_at":"2026-11-25T09:00:00Z"}]}`))
	f.Add([]byte(`{"events":[{"id":"a","Action":"x","eventable":{"type":"t","id":"1"},"creator":{"type":"u","id":"2"}}]}`))
	f.Add([]byte(`{"id":"a","action":"x","eventable":{"type":"t","id":"1","x":null},"creator":{"type":"u","id":"2"},"tenant":"acme"}`))
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		fast, ok := parseFast(body, "acme", now)
		if !ok {
			return
		}
		if !json.Valid(body) {
			t.Fatalf("fast accepted a body encoding/json finds invalid: %q", body)
		}
		strict, errs := parseBodySlow(body, "acme", now)
		if len(errs) > 0 {
			t.Fatalf("fast accepted, strict rejected %v: %q", errs, body)
		}
		if len(fast) != len(strict) {
			t.Fatalf("fast %d events, strict %d: %q", len(fast), len(strict), body)
		}
		for i := range fast {
			a, b := fast[i], strict[i]
			if len(a.ID) == 36 && len(b.ID) == 36 && !bytes.Contains(body, []byte(a.ID)) {
				a.ID, b.ID = "", "" // both generated UUIDv7s
			}
			if len(a.Parents) == 0 && len(b.Parents) == 0 {
				a.Parents, b.Parents = nil, nil
			}
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("event %d differs:\nfast   %+v\nstrict %+v\nbody %q", i, a, b, body)
			}
		}
	})
}

// TestParseBodySlowLeavesBodyIntact: the strict parser once decoded a
// batch's events into a slice whose first element was the body itself, so
// the first event's bytes overwrote the request body.
func TestParseBodySlowLeavesBodyIntact(t *testing.T) {
	t.Parallel()
	body := []byte(`{"events":[{"action":"closed","eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"}}]}`)
	before := bytes.Clone(body)
	_, errs := parseBodySlow(body, "acme", time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if !bytes.Equal(body, before) {
		t.Fatalf("the body changed:\n%s\n%s", before, body)
	}
}

// TestAppendResultsMatchesJSON: the 202 body written without reflection is
// what httpapi.JSON writes, and ids it would escape fall back to it.
func TestAppendResultsMatchesJSON(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		results []events.Result
		fast    bool
	}{
		{[]events.Result{}, true},
		{[]events.Result{{ID: "01936f0e-7c1a-7d4e-9b1a-3c2d1e0f4a5b", Seq: 1}}, true},
		{[]events.Result{{ID: "a_b-C9", Seq: 18446744073709551615, Duplicate: true}, {ID: "x", Seq: 0}}, true},
		{[]events.Result{{ID: "<&>", Seq: 3}}, true}, // httpapi.JSON does not escape HTML
		{[]events.Result{{ID: "q\"uote", Seq: 2}}, false},
		{[]events.Result{{ID: "Zoë\u2028", Seq: 4}}, false},
	} {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false) // as httpapi.JSON
		if err := enc.Encode(appendResponse{Events: c.results}); err != nil {
			t.Fatal(err)
		}
		got, ok := appendResults([]byte("prefix"), c.results)
		if ok != c.fast {
			t.Fatalf("appendResults(%v) took the fast path: %v, want %v", c.results, ok, c.fast)
		}
		if ok && !bytes.Equal(got[len("prefix"):], want.Bytes()) {
			t.Fatalf("appendResults(%v)\n got %s\nwant %s", c.results, got[len("prefix"):], want.Bytes())
		}
	}
	if _, ok := appendResults(nil, nil); ok {
		t.Fatal("nil results must fall back (encoding/json writes null)")
	}
}
