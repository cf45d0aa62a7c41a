package events

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

var encodeSeeds = []string{
	`{"tenant":"acme","action":"closed","eventable":{"type":"card","id":"c42"},"creator":{"type":"user","id":"u7"}}`,
	`{"id":"ev-1","tenant":"acme","action":"closed","eventable":{"type":"card","id":"c42"},"creator":{"type":"user","id":"u7"},"parents":[{"type":"board","id":"b1"},{"type":"account","id":"a1"}],"particulars":{"title":"Fix the login page","n":[1, 2.5e3, -0],"nested":{"a":null,"b":true,"c":"x y\tz"}},"occurred_at":"2026-11-25T09:59:00.123456789+01:00"}`,
	"{\"tenant\":\"acme\",\"action\":\"a\",\"eventable\":{\"type\":\"card\",\"id\":\"c\"},\"creator\":{\"type\":\"user\",\"id\":\"u\"},\"particulars\":\n {\n  \"a\" : [ 1 , \"b c\" ] ,\n \"q\\\"uote\\\\\": \"\\\" \\\\ \\n \\u00e9\"\n}\n}",
	`{"tenant":"acme","action":"a","eventable":{"type":"card","id":"<b>&amp;</b>"},"creator":{"type":"user","id":"Zoë"},"particulars":{"html":"<script>&</script>"}}`,
	`{"tenant":"acme","action":"a","eventable":{"type":"card","id":"c\"q\\"},"creator":{"type":"user","id":"\u2028"},"particulars":{"ls":"\u2028\u2029","e":"Zoë"}}`,
	`{"tenant":"acme","action":"a","eventable":{"type":"card","id":"c"},"creator":{"type":"user","id":"u"},"particulars":{"ls":" "}}`,
	`{"tenant":"acme","action":"a","eventable":{"type":"card","id":"c"},"creator":{"type":"user","id":"u"},"particulars":{}, "parents":[]}`,
	`{"tenant":"acme","action":"a","eventable":{"type":"card","id":"c\u007f"},"creator":{"type":"user","id":"u"},"particulars":{"a":"\u007f"}}`,
}

// checkAppendInput decodes data as an input event and, when it is valid,
// holds appendInput to encoding/json: the same bytes whenever it reports
// true.
func checkAppendInput(t *testing.T, data []byte) (fast bool) {
	t.Helper()
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	e, err := Decode(data, 0, now)
	if err != nil || e.Normalize(now) != nil {
		return false
	}
	want, err := e.marshalInputJSON()
	if err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	got, ok := appendInput([]byte("prefix"), &e)
	if !bytes.HasPrefix(got, []byte("prefix")) {
		t.Fatalf("appendInput lost what dst held: %q", got)
	}
	got = got[len("prefix"):]
	if ok && !bytes.Equal(got, want) {
		t.Fatalf("appendInput of %s\n got %s\nwant %s", data, got, want)
	}
	if !ok && len(got) != 0 {
		t.Fatalf("appendInput reported false but appended %q", got)
	}
	m, err := e.MarshalInput()
	if err != nil || !bytes.Equal(m, want) {
		t.Fatalf("MarshalInput = %s, %v; want %s", m, err, want)
	}
	checkAppendStored(t, e, ok)
	e.RecordedAt, e.Seq = now.Add(1500*time.Millisecond), 1<<40+7
	checkAppendStored(t, e, ok)
	return ok
}

// checkAppendStored holds AppendStored to the stored form by
// encoding/json; it must take the fast path whenever appendInput did.
func checkAppendStored(t *testing.T, e Event, inputFast bool) {
	t.Helper()
	want, err := e.marshalStoredJSON()
	if err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	got, ok := AppendStored([]byte("prefix"), &e)
	if !bytes.HasPrefix(got, []byte("prefix")) {
		t.Fatalf("AppendStored lost what dst held: %q", got)
	}
	got = got[len("prefix"):]
	switch {
	case ok && !bytes.Equal(got, want):
		t.Fatalf("AppendStored\n got %s\nwant %s", got, want)
	case !ok && len(got) != 0:
		t.Fatalf("AppendStored reported false but appended %q", got)
	case ok != inputFast && e.ID != "" && e.Tenant != "":
		t.Fatalf("AppendStored fast=%v, appendInput fast=%v for %s", ok, inputFast, want)
	}
	m, err := e.MarshalJSON()
	if err != nil || !bytes.Equal(m, want) {
		t.Fatalf("MarshalJSON = %s, %v; want %s", m, err, want)
	}
}

// TestAppendInputMatchesJSON: the stream body written without reflection
// is byte for byte encoding/json's, and the cases encoding/json escapes
// fall back to it.
func TestAppendInputMatchesJSON(t *testing.T) {
	fast := 0
	for _, s := range encodeSeeds {
		if !json.Valid([]byte(s)) {
			t.Fatalf("seed is not JSON: %s", s)
		}
		if checkAppendInput(t, []byte(s)) {
			fast++
		}
	}
	if fast < 3 {
		t.Fatalf("only %d of the seeds took the fast path", fast)
	}
}

func FuzzAppendInput(f *testing.F) {
	for _, s := range encodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkAppendInput(t, data) })
}
