package ingest_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// unstorableBodies are request bodies ingest once answered 202 for although
// no read model could store them, or stored rewritten; each is a 422 naming
// "index:field". The schema agreement test (docs/schema) runs them too.
var unstorableBodies = []struct {
	name, body string
	fields     []string
}{
	{"invalid UTF-8 in eventable.id", "{\"action\":\"closed\",\"eventable\":{\"type\":\"card\",\"id\":\"c\xff\"},\"creator\":{\"type\":\"user\",\"id\":\"u1\"}}", []string{"0:eventable.id"}},
	{"lone surrogate in creator.id", `{"action":"closed","eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"\ud800"}}`, []string{"0:creator.id"}},
	{"occurred_at year 1", `{"action":"closed","eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"},"occurred_at":"0001-01-01T00:00:00Z"}`, []string{"0:occurred_at"}},
	{"particulars 1e999999", `{"action":"closed","eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"},"particulars":{"n":1e999999}}`, []string{"0:particulars.n"}},
	{"particulars 1e-999999", `{"action":"closed","eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"},"particulars":{"n":1e-999999}}`, []string{"0:particulars.n"}},
	{"particulars lone surrogate", `{"action":"closed","eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"},"particulars":{"s":"\ud800"}}`, []string{"0:particulars.s"}},
	{"particulars invalid UTF-8", "{\"action\":\"closed\",\"eventable\":{\"type\":\"card\",\"id\":\"c1\"},\"creator\":{\"type\":\"user\",\"id\":\"u1\"},\"particulars\":{\"s\":\"\xff\"}}", []string{"0:particulars.s"}},
	{"particulars too deep", `{"action":"closed","eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"},"particulars":{"a":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}}`, []string{"0:particulars.a" + strings.Repeat("[0]", 62)}},
	{"parent id with a newline", `{"action":"closed","eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"},"parents":[{"type":"board","id":"a\nb"}]}`, []string{"0:parents[0].id"}},
	{"one bad event in a batch", `{"events":[{"action":"closed","eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"}},` +
		`{"action":"closed","eventable":{"type":"card","id":"c2"},"creator":{"type":"user","id":"u1"},"particulars":{"items":[1,2,3,{"n":1e131072}]}}]}`, []string{"1:particulars.items[3].n"}},
	{"batch depth counts from the event", `{"events":[{"action":"closed","eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"},"particulars":{"a":` + strings.Repeat("[", 62) + strings.Repeat("]", 62) + `}},` +
		`{"action":"closed","eventable":{"type":"card","id":"c2"},"creator":{"type":"user","id":"u1"},"particulars":{"a":` + strings.Repeat("[", 63) + strings.Repeat("]", 63) + `}}]}`, []string{"1:particulars.a" + strings.Repeat("[0]", 62)}},
}

func TestIngestRefusesWhatCannotBeStored(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, tt := range unstorableBodies {
		t.Run(tt.name, func(t *testing.T) {
			r := post(t, b.url, b.key, "application/json", []byte(tt.body))
			require.Equal(t, http.StatusUnprocessableEntity, r.status, "%v", r.problem)
			require.Equal(t, tt.fields, fieldsOf(t, r.problem))
		})
	}
	require.Empty(t, streamEvents(t, b.str), "nothing appended")
}
