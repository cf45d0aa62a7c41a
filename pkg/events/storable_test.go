package events_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/pkg/events"
)

func TestCheckStorableNamesThePath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, doc string
		field     string // "" when the document is storable
		msg       string
	}{
		{"plain", `{"a":[1,"x",{"b":null}],"c":true}`, "", ""},
		{"whitespace", " \t\r\n{ \"a\" : [ 1 , 2 ] } \n", "", ""},
		{"root string NUL", `"\u0000"`, "body", "NUL"},
		{"root number", `1e131072`, "body", "1e131072"},
		{"top-level key", `{"a":"\u0000"}`, "a", "NUL"},
		{"array index", `[0,1,"\ud800"]`, "[2]", "high surrogate"},
		{"nested", `{"a":{"b":[{},{"c":[0,0,0,1e-16384]}]}}`, "a.b[1].c[3]", "decimal point"},
		{"quoted key", `{"a.b":{"x y":"\udc00"}}`, `["a.b"]["x y"]`, "low surrogate"},
		{"escaped key decoded", `{"\u0061":"\u0000"}`, "a", "NUL"},
		{"digit-first key", `{"1a":"\u0000"}`, `["1a"]`, "NUL"},
		{"empty key", `{"":"\u0000"}`, `[""]`, "NUL"},
		{"key NUL", `{"ok":1,"a\u0000b":1}`, `["a\u0000b"]`, "key must not contain the NUL"},
		{"key lone surrogate", `{"\ud800":1}`, `["\ud800"]`, "key has a UTF-16 high surrogate"},
		{"key invalid UTF-8", "{\"a\xffb\":1}", `["a\xffb"]`, "key is not valid UTF-8 (byte 0xff)"},
		{"value after key problem", "{\"a\xff\":1,\"b\":\"\\u0000\"}", `["a\xff"]`, "key is not valid"},
		{"second value", "{\"a\":\"ok\",\"b\":\"\\u0000\"}", "b", "NUL"},
		{"invalid UTF-8 value", "{\"s\":\"abc\xc3\"}", "s", "UTF-8"},
		{"valid multi-byte", "{\"s\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x83\x8f\"}", "", ""},
		{"surrogate pair", `{"s":"\ud83d\ude00\uD83D\uDE00"}`, "", ""},
		{"escapes", `{"s":"\"\\\/\b\f\n\r\t\u00e9\uffff"}`, "", ""},
		{"depth 64", strings.Repeat("[", 64) + strings.Repeat("]", 64), "", ""},
		{"depth 65", strings.Repeat("[", 65) + strings.Repeat("]", 65), strings.Repeat("[0]", 64), "deeper than 64"},
		{"depth 65 in objects", strings.Repeat(`{"a":`, 65) + "1" + strings.Repeat("}", 65), "a" + strings.Repeat(".a", 63), "deeper than 64"},
		{"numbers in range", `[0,-0,0.0,1e131071,9.9999e131071,-9e+131071,1e-16383,5e-16383,123.456e-16380,0e1073741822,0.0e0,1E2]`, "", ""},
		{"1e131072", `[1e131072]`, "[0]", "1e131072"},
		{"100e131070", `[100e131070]`, "[0]", "1e131072"},
		{"0.1e131073", `[0.1e131073]`, "[0]", "1e131072"},
		{"0.01e131073", `[0.01e131073]`, "", ""},
		{"leading fraction zeros", `[0.0001e131075]`, "", ""},
		{"scale 16384", `[1e-16384]`, "[0]", "16384 digits after the decimal point"},
		{"scale counts trailing zeros", `[1.000e-16381]`, "[0]", "16384 digits"},
		{"zero with scale", `[0.0e-16383]`, "[0]", "16384 digits"},
		{"exponent limit", `[0e1073741823]`, "[0]", "exponent"},
		{"negative exponent limit", `[0e-1073741823]`, "[0]", "exponent"},
		{"exponent overflow", `[1e9999999999999999999999999]`, "[0]", "exponent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			errs := events.CheckStorable([]byte(tt.doc), "body")
			if tt.field == "" {
				require.Empty(t, errs)
				return
			}
			require.NotEmpty(t, errs)
			require.Equal(t, tt.field, errs[0].Field, "%+v", errs)
			require.Contains(t, errs[0].Message, tt.msg)
			require.True(t, utf8.ValidString(errs[0].Field), "the path is valid UTF-8")
		})
	}
}

func TestCheckStorableReportsEveryProblemUpToTen(t *testing.T) {
	t.Parallel()
	errs := events.CheckStorable([]byte(`{"a":"\u0000\u0000","b":[1e999999,"\ud800"],"c":"ok"}`), "body")
	var fields []string
	for _, fe := range errs {
		fields = append(fields, fe.Field)
	}
	require.Equal(t, []string{"a", "b[0]", "b[1]"}, fields, "one problem per value")

	many := `[` + strings.TrimSuffix(strings.Repeat(`"\u0000",`, 50), ",") + `]`
	require.Len(t, events.CheckStorable([]byte(many), "body"), 10)

	deep := `{"x":"\u0000","y":` + strings.Repeat("[", 100) + `"\u0000"` + strings.Repeat("]", 100) + `}`
	errs = events.CheckStorable([]byte(deep), "body")
	require.Len(t, errs, 2, "nothing past the depth problem: %+v", errs)
	require.Contains(t, errs[1].Message, "deeper")
}

// TestCheckStorableDoesNotAllocate: ingest runs it on every event; on a
// storable event it allocates nothing.
func TestCheckStorableDoesNotAllocate(t *testing.T) {
	doc := []byte(valid)
	allocs := testing.AllocsPerRun(100, func() {
		if events.CheckStorable(doc, "event") != nil {
			t.Fatal("not storable")
		}
	})
	require.Zero(t, allocs)
}

// FuzzCheckStorable: the scan never panics, reads JSON validity exactly as
// encoding/json does, names every problem with a valid UTF-8 path, and
// finds none in what encoding/json writes from valid UTF-8 text without
// NUL (json.Marshal cannot produce lone surrogates or bad numbers).
func FuzzCheckStorable(f *testing.F) {
	f.Add([]byte(valid))
	f.Add([]byte(`{"a":"\ud800","b":[1e131072,0e-16384],"\u0000":"\xff"}`))
	f.Add([]byte(`[[[[{"a":[1,2,{"b":"\ud83d\ude00"}]}]]]]`))
	f.Add([]byte(`-0.0e-0`))
	f.Add([]byte(" \"\\u00e9\" "))
	f.Fuzz(func(t *testing.T, doc []byte) {
		valid, errs := events.ScanStorable(doc)
		deep := false
		for _, fe := range errs {
			if fe.Field == "" || fe.Message == "" || !utf8.ValidString(fe.Field) {
				t.Fatalf("bad problem %+v", fe)
			}
			deep = deep || strings.Contains(fe.Message, "deeper")
		}
		if !deep && valid != json.Valid(doc) {
			t.Fatalf("scan reads validity %v, encoding/json %v: %q", valid, json.Valid(doc), doc)
		}
		// StorableValue is the same scan of the first value: what it
		// passes is valid JSON with nothing to report, and a whole
		// document the scan passes is one value it passes.
		n, ok := events.StorableValue(doc)
		if ok && (!json.Valid(doc[:n]) || len(events.CheckStorable(doc[:n], "event")) > 0) {
			t.Fatalf("StorableValue passed %q (of %q)", doc[:n], doc)
		}
		if valid && len(errs) == 0 && (!ok || len(bytes.TrimSpace(doc[n:])) > 0) {
			t.Fatalf("StorableValue(%q) = %d, %v; the whole document is storable", doc, n, ok)
		}
		if !valid || !utf8.Valid(doc) {
			return
		}
		var v any
		if json.Unmarshal(doc, &v) != nil {
			return
		}
		out, err := json.Marshal(v)
		if err != nil || strings.Contains(string(out), `\u0000`) {
			return
		}
		if _, errs := events.ScanStorable(out); len(errs) > 0 && !deep {
			t.Fatalf("json.Marshal output %q is not storable: %+v", out, errs)
		}
	})
}

func TestCheckRef(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		field  string
		ref    events.Ref
		fields []string
	}{
		{"valid", "parents[0]", events.Ref{Type: "board", ID: "карта €"}, nil},
		{"bad type", "parents[0]", events.Ref{Type: "Board", ID: "b1"}, []string{"parents[0].type"}},
		{"newline", "parents[1]", events.Ref{Type: "board", ID: "a\nb"}, []string{"parents[1].id"}},
		{"NUL", "", events.Ref{Type: "card", ID: "\x00"}, []string{"id"}},
		{"invalid UTF-8", "", events.Ref{Type: "card", ID: "c\xff"}, []string{"id"}},
		{"empty", "eventable", events.Ref{}, []string{"eventable.type", "eventable.id"}},
		{"257 bytes", "", events.Ref{Type: "card", ID: strings.Repeat("é", 128) + "x"}, []string{"id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var fields []string
			for _, fe := range events.CheckRef(tt.field, tt.ref) {
				fields = append(fields, fe.Field)
			}
			require.Equal(t, tt.fields, fields)
		})
	}
	require.Empty(t, events.CheckRefID("user_id", "zoë"))
	require.Equal(t, "user_id", events.CheckRefID("user_id", "a\tb")[0].Field)
}

// BenchmarkCheckStorable is the cost ingest pays per event for reading
// the raw bytes, against encoding/json's json.Valid on the same bytes.
func BenchmarkCheckStorable(b *testing.B) {
	doc := []byte(valid)
	b.Run("CheckStorable", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		b.ReportAllocs()
		for b.Loop() {
			if events.CheckStorable(doc, "event") != nil {
				b.Fatal("not storable")
			}
		}
	})
	b.Run("json.Valid", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		b.ReportAllocs()
		for b.Loop() {
			if !json.Valid(doc) {
				b.Fatal("not valid")
			}
		}
	})
}

// TestStorableValue: the first value's end and whether it is valid and
// storable; what follows it is the caller's.
func TestStorableValue(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		doc string
		n   int
		ok  bool
	}{
		{` {"a":[1,"x"]} ,{}`, 14, true},
		{`{"n":1e400}]`, 11, true},
		{`{"n":1e131072}`, 14, false},
		{`{"s":"\ud800"}`, 14, false},
		{"{\"s\":\"\xff\"}", 9, false},
		{`{"a":01}`, 6, false},
		{`{"a":1,}`, 7, false},
		{`{"a":` + strings.Repeat("[", 63) + strings.Repeat("]", 63) + `}`, 132, true}, // 64 levels
		{`{"a":` + strings.Repeat("[", 64) + strings.Repeat("]", 64) + `}`, 0, false},
		{``, 0, false},
	} {
		n, ok := events.StorableValue([]byte(c.doc))
		if ok != c.ok || (c.ok && n != c.n) {
			t.Errorf("StorableValue(%q) = %d, %v; want %d, %v", c.doc, n, ok, c.n, c.ok)
		}
	}
}

// TestNormalizeStorableChecksEveryOtherRule: NormalizeStorable skips only
// the storable scan of the particulars; their size and kind, and every
// other rule, are checked as Normalize checks them.
func TestNormalizeStorableChecksEveryOtherRule(t *testing.T) {
	t.Parallel()
	base := events.Event{Tenant: "acme", Action: "closed", Eventable: events.Ref{Type: "card", ID: "c1"}, Creator: events.Ref{Type: "user", ID: "u1"}}
	for name, mod := range map[string]func(*events.Event){
		"particulars an array": func(e *events.Event) { e.Particulars = json.RawMessage(`[1]`) },
		"particulars too large": func(e *events.Event) {
			e.Particulars = json.RawMessage(`{"s":"` + strings.Repeat("x", events.MaxParticulars) + `"}`)
		},
		"no action":              func(e *events.Event) { e.Action = "" },
		"bad ref id":             func(e *events.Event) { e.Creator.ID = "a\x00b" },
		"too many parents":       func(e *events.Event) { e.Parents = make([]events.Ref, events.MaxParents+1) },
		"occurred in the future": func(e *events.Event) { e.OccurredAt = now.Add(48 * time.Hour) },
	} {
		a, b := base, base
		mod(&a)
		mod(&b)
		errA, errB := a.Normalize(now), b.NormalizeStorable(now)
		if errA == nil || errB == nil || errA.Error() != errB.Error() {
			t.Errorf("%s: Normalize %v, NormalizeStorable %v", name, errA, errB)
		}
	}
	a, b := base, base
	a.Particulars, b.Particulars = json.RawMessage(`{"n":1e400}`), json.RawMessage(`{"n":1e400}`)
	if errA, errB := a.Normalize(now), b.NormalizeStorable(now); errA != nil || errB != nil {
		t.Fatalf("Normalize %v, NormalizeStorable %v", errA, errB)
	}
	a.ID, b.ID = "", ""
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("Normalize %+v, NormalizeStorable %+v", a, b)
	}
}
