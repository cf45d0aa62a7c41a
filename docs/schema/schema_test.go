package schema_test

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/eventline/eventline/docs/schema"
	"github.com/eventline/eventline/pkg/events"
)

var now = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

const ok = `{"action":"closed","eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"}`

func TestUnexpressible(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, doc string
		want      []schema.Rule
	}{
		{"plain event", ok + `}`, nil},
		{"edges the schema can check", ok + `,"particulars":{"n":9.9e131071,"m":1e-16383,"z":0e999,"s":"\ud83d\ude00 \\ud800"},"occurred_at":"1970-01-01T00:00:00Z"}`, nil},
		{"raw invalid UTF-8", ok + ",\"particulars\":{\"s\":\"\xff\"}}", []schema.Rule{schema.RawUTF8}},
		{"lone high surrogate", ok + `,"particulars":{"s":"\ud800x"}}`, []schema.Rule{schema.SurrogateEscape}},
		{"lone low surrogate", ok + `,"particulars":{"s":"\udc00"}}`, []schema.Rule{schema.SurrogateEscape}},
		{"number too large", ok + `,"particulars":{"n":10e131071}}`, []schema.Rule{schema.NumericRange}},
		{"scale too large", ok + `,"particulars":{"n":[0.0e-16383]}}`, []schema.Rule{schema.NumericRange}},
		{"exponent too large", ok + `,"particulars":{"n":0e1073741823}}`, []schema.Rule{schema.NumericRange}},
		{"too deep", ok + `,"particulars":{"a":` + strings.Repeat("[", 63) + strings.Repeat("]", 63) + `}}`, []schema.Rule{schema.Depth}},
		{"deep in a batch is counted from the event", `{"events":[` + ok + `,"particulars":{"a":` + strings.Repeat("[", 62) + strings.Repeat("]", 62) + `}}]}`, nil},
		{"particulars too big", ok + `,"particulars":{"s":"` + strings.Repeat("x", 64<<10) + `"}}`, []schema.Rule{schema.ParticularsBytes}},
		{"ref id bytes", `{"action":"closed","eventable":{"type":"card","id":"` + strings.Repeat("é", 129) + `"},"creator":{"type":"user","id":"u1"}}`, []schema.Rule{schema.RefIDBytes}},
		{"future", ok + `,"occurred_at":"2026-11-26T10:00:01Z"}`, []schema.Rule{schema.FutureSkew}},
		{"epoch with offset", ok + `,"occurred_at":"1970-01-01T00:30:00+01:00"}`, []schema.Rule{schema.EpochInstant}},
		{"other tenant", ok + `,"tenant":"globex"}`, []schema.Rule{schema.TenantContext}},
		{"same tenant", ok + `,"tenant":"acme"}`, nil},
		{"repeated id", `{"events":[` + ok + `,"id":"a"},` + ok + `,"id":"a"}]}`, []schema.Rule{schema.UniqueIDs}},
		{"body too large", ok + `}` + strings.Repeat(" ", 1<<20), []schema.Rule{schema.BodySize}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, schema.Unexpressible([]byte(tt.doc), now, "acme"))
		})
	}
}

// TestAsyncAPI: docs/asyncapi.yaml describes what pkg/events does: the
// subject scheme, the Nats-Msg-Id forms, the payload schema, and examples
// that the schema and ParseStored accept.
func TestAsyncAPI(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../asyncapi.yaml")
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, yaml.Unmarshal(raw, &doc))
	require.Equal(t, "3.0.0", doc["asyncapi"])
	get := func(path ...string) any {
		var v any = doc
		for _, p := range path {
			m, ok := v.(map[string]any)
			require.True(t, ok, "%v is not an object at %s", path, p)
			v = m[p]
		}
		return v
	}
	address := get("channels", "events", "address").(string)
	subject, err := events.Subject("acme", "card", "closed")
	require.NoError(t, err)
	require.Equal(t, subject, strings.NewReplacer("{tenant}", "acme", "{eventable_type}", "card", "{action}", "closed").Replace(address))
	for _, p := range []string{"tenant", "eventable_type", "action"} {
		require.NotNil(t, get("channels", "events", "parameters", p), p)
	}
	require.Equal(t, "./schema/event-input.schema.json", get("components", "messages", "event", "payload", "schema", "$ref"))
	_, err = os.Stat("event-input.schema.json")
	require.NoError(t, err, "the payload reference resolves from docs/")

	headers := compileYAML(t, get("components", "messages", "event", "headers"))
	header := func(name, value string) error {
		return headers.Validate(map[string]any{name: value})
	}
	for _, v := range []string{"acme:e1", "acme:close-c42-1", "acme:e1:1234"} {
		require.NoError(t, header("Nats-Msg-Id", v), v)
		require.NoError(t, parseWithMsgID(v), "ParseStored accepts what the document allows: %s", v)
	}
	for _, v := range []string{"e1", "acme:", "acme:e1:", "acme:e1:x", "Acme:e1", "acme:e.1"} {
		require.Error(t, header("Nats-Msg-Id", v), v)
		require.Error(t, parseWithMsgID(v), "ParseStored refuses what the document refuses: %s", v)
	}
	require.NoError(t, header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))

	s, err := schema.Compile()
	require.NoError(t, err)
	examples := get("components", "messages", "event", "examples").([]any)
	require.NotEmpty(t, examples)
	for _, ex := range examples {
		ex := ex.(map[string]any)
		payload, err := json.Marshal(ex["payload"])
		require.NoError(t, err)
		require.NoError(t, schema.Validate(s.Input, payload), "example %s", ex["name"])
		h := nats.Header{}
		if hs, ok := ex["headers"].(map[string]any); ok {
			for k, v := range hs {
				require.NoError(t, header(k, v.(string)), "example %s header %s", ex["name"], k)
				h.Set(k, v.(string))
			}
		}
		var body struct {
			Action    string     `json:"action"`
			Eventable events.Ref `json:"eventable"`
		}
		require.NoError(t, json.Unmarshal(payload, &body))
		subject, err := events.Subject("acme", body.Eventable.Type, body.Action)
		require.NoError(t, err)
		_, err = events.ParseStored(events.Message{Subject: subject, Data: payload, Header: h, Seq: 1, Timestamp: now})
		require.NoError(t, err, "example %s", ex["name"])
	}
	ops := get("operations", "publishEvent").(map[string]any)
	require.Equal(t, "send", ops["action"])
	require.True(t, slices.ContainsFunc(examplesOf(t, get("components", "messages", "pubAck", "examples")), func(m map[string]any) bool { return m["duplicate"] == true }))
}

func parseWithMsgID(id string) error {
	body := `{"id":"e1",` + strings.TrimPrefix(ok, "{") + `}`
	if strings.Contains(id, "close-c42-1") {
		body = `{"id":"close-c42-1",` + strings.TrimPrefix(ok, "{") + `}`
	}
	_, err := events.ParseStored(events.Message{Subject: "events.acme.card.closed", Data: []byte(body), Seq: 1, Timestamp: now,
		Header: nats.Header{events.HeaderMsgID: []string{id}}})
	return err
}

func examplesOf(t *testing.T, v any) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, ex := range v.([]any) {
		out = append(out, ex.(map[string]any)["payload"].(map[string]any))
	}
	return out
}

// compileYAML compiles a JSON Schema written in YAML.
func compileYAML(t *testing.T, v any) *jsonschema.Schema {
	t.Helper()
	raw, err := json.Marshal(v)
	require.NoError(t, err)
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(string(raw)))
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	require.NoError(t, c.AddResource("headers.json", doc))
	s, err := c.Compile("headers.json")
	require.NoError(t, err)
	return s
}
