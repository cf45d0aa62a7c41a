package ingest

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestParseFastEdges: the fast path takes a body only when encoding/json
// would find it valid and the strict parser would accept it, and for every
// other body the answer is the strict parser's, field for field.
func TestParseFastEdges(t *testing.T) {
	t.Parallel()
	const ev = `{"id":"%s","action":"closed","eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"}%s}`
	e := func(id, extra string) string { return fmt.Sprintf(ev, id, extra) }
	batch := func(evs ...string) string { return `{"events":[` + strings.Join(evs, ",") + `]}` }
	deep := func(n int) string {
		return `,"particulars":{"a":` + strings.Repeat("[", n) + strings.Repeat("]", n) + `}`
	}
	for _, c := range []struct {
		name   string
		body   string
		fast   bool     // the fast path takes it
		fields []string // the strict parser's errors, "index:field"; nil: accepted
	}{
		{"one event", e("a", ""), true, nil},
		{"batch", batch(e("a", ""), e("b", "")), true, nil},
		{"whitespace everywhere", " \n{ \"events\" :\t[ " + e("a", "") + " ,\r\n" + e("b", "") + " ] } \n", true, nil},
		{"trailing garbage after the array", batch(e("a", "")) + "x", false, []string{"0:body"}},
		{"a second body", batch(e("a", "")) + batch(e("b", "")), false, []string{"0:body"}},
		{"an extra brace", batch(e("a", "")) + "}", false, []string{"0:body"}},
		{"trailing garbage after one event", e("a", "") + " 1", false, []string{"0:body"}},
		{"a trailing comma in the array", `{"events":[` + e("a", "") + `,]}`, false, []string{"0:body"}},
		{"a trailing comma in the body", `{"events":[` + e("a", "") + `],}`, false, []string{"0:body"}},
		{"the array unclosed", `{"events":[` + e("a", ""), false, []string{"0:body"}},
		{"a missing comma", `{"events":[` + e("a", "") + e("b", "") + `]}`, false, []string{"0:body"}},
		{"a leading zero in particulars", e("a", `,"particulars":{"n":01}`), false, []string{"0:body"}},
		{"a raw control character", e("a", `,"particulars":{"s":"a`+"\t"+`b"}}`), false, []string{"0:body"}},
		{"a byte order mark", "\xef\xbb\xbf" + e("a", ""), false, []string{"0:body"}},
		{"invalid UTF-8 in a particulars string", e("a", `,"particulars":{"s":"`+"\xff"+`"}`), false, []string{"0:particulars.s"}},
		{"invalid UTF-8 in a particulars key", e("a", `,"particulars":{"`+"\xc3"+`":1}`), false, []string{`0:particulars["\xc3"]`}},
		{"invalid UTF-8 in an id", batch(e("a", ""), e("b\xff", "")), false, []string{"1:id"}},
		{"particulars 62 levels deeper", e("a", deep(62)), true, nil},
		{"particulars 63 levels deeper", e("a", deep(63)), false, []string{"0:particulars.a" + strings.Repeat("[0]", 62)}},
		{"nested past encoding/json's limit", e("a", deep(20000)), false, []string{"0:body"}},
		{"a repeated event key: encoding/json decodes it", e("a", `,"id":"b"`), true, nil},
		{"a repeated ref key: encoding/json decodes it", `{"action":"closed","eventable":{"type":"card","id":"c1","id":"c2"},"creator":{"type":"user","id":"u1"}}`, true, nil},
		{"a repeated eventable: encoding/json would merge the two", `{"action":"closed","eventable":{"type":"card","id":"c1"},"eventable":{"id":"c2"},"creator":{"type":"user","id":"u1"}}`, false, []string{"0:eventable.type"}},
		{"repeated parents: encoding/json would reuse the first's elements", e("a", `,"parents":[{"type":"board","id":"b1"}],"parents":[{"id":"b2"}]`), false, []string{"0:parents[0].type"}},
		{"a repeated events key", `{"events":[` + e("a", "") + `],"events":[` + e("b", "") + `]}`, false, nil},
		{"a repeated particulars key", e("a", `,"particulars":{"n":1,"n":2}`), true, nil},
		{"1e400 in particulars", e("a", `,"particulars":{"n":1e400,"m":-1e-400}`), true, nil},
		{"1e131072 in particulars", e("a", `,"particulars":{"n":1e131072}`), false, []string{"0:particulars.n"}},
		{"a number as the id", `{"id":1e400,"action":"closed","eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"}}`, false, []string{"0:id"}},
		{"a lone high surrogate", e("a", `,"particulars":{"s":"\ud800"}`), false, []string{"0:particulars.s"}},
		{"a lone low surrogate in a ref id", `{"action":"closed","eventable":{"type":"card","id":"\udc00"},"creator":{"type":"user","id":"u1"}}`, false, []string{"0:eventable.id"}},
		{"a surrogate pair", e("a", `,"particulars":{"s":"\ud83d\ude00"}`), true, nil},
		{"an escaped ref id", `{"action":"closed","eventable":{"type":"card","id":"c\u00e9"},"creator":{"type":"user","id":"u1"}}`, true, nil},
		{"NUL escaped", e("a", `,"particulars":{"s":"\u0000"}`), false, []string{"0:particulars.s"}},
		{"an empty batch", `{"events":[]}`, false, []string{"0:events"}},
		{"a repeated id", batch(e("a", ""), e("a", "")), false, []string{"1:id"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
			body := []byte(c.body)
			fastES, ok := parseFast(body, "acme", now)
			if ok != c.fast {
				t.Fatalf("parseFast took it: %v, want %v", ok, c.fast)
			}
			if ok && !json.Valid(body) {
				t.Fatal("parseFast took a body encoding/json finds invalid")
			}
			strictES, strictErrs := parseBodySlow(body, "acme", now)
			es, errs := parseBody(body, "acme", now)
			if !reflect.DeepEqual(errs, strictErrs) {
				t.Fatalf("parseBody %v, strict %v", errs, strictErrs)
			}
			var fields []string
			for _, fe := range errs {
				fields = append(fields, fmt.Sprintf("%d:%s", fe.Index, fe.Field))
			}
			if !reflect.DeepEqual(fields, c.fields) {
				t.Fatalf("errors %v, want %v", errs, c.fields)
			}
			if ok && (len(fastES) != len(strictES) || len(es) != len(strictES)) {
				t.Fatalf("fast %d events, strict %d", len(fastES), len(strictES))
			}
			for i := range fastES {
				generated := !strings.Contains(c.body, fastES[i].ID) // both UUIDv7s
				if fastES[i].ID != strictES[i].ID && !generated || string(fastES[i].Particulars) != string(strictES[i].Particulars) || fastES[i].Eventable != strictES[i].Eventable {
					t.Fatalf("event %d: fast %+v, strict %+v", i, fastES[i], strictES[i])
				}
			}
		})
	}
}
