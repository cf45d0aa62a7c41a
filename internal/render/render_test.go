package render_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/dev"
	"github.com/eventline/eventline/internal/render"
	"github.com/eventline/eventline/pkg/events"
)

var update = flag.Bool("update", false, "rewrite testdata/demo.golden")

// TestDemoGolden: the sentence of every event of the first stretch of the
// demo stream (`eventline dev --demo`, a fixed seed), which holds every
// action it makes, in Markdown and HTML. Run with -update after changing
// a built-in sentence, and read the diff.
func TestDemoGolden(t *testing.T) {
	t.Parallel()
	g := dev.NewDemoGenerator(42)
	var b strings.Builder
	seen := map[string]bool{}
	for i, m := range g.Next(60) {
		raw, err := json.Marshal(m)
		require.NoError(t, err)
		var e events.Event
		require.NoError(t, json.Unmarshal(raw, &e))
		e.Type = events.TypeOf(e.Eventable.Type, e.Action)
		seen[e.Type] = true
		s := render.Builtins().Render(e)
		fmt.Fprintf(&b, "%02d %-16s %s\n   %16s %s\n", i, e.Type, s.Markdown(), "", s.HTML())
	}
	for _, typ := range []string{"card.published", "card.assigned", "card.moved", "comment.created", "card.closed"} {
		require.True(t, seen[typ], "the demo stretch has no %s: lengthen it", typ)
	}
	disabled := events.Event{Action: "disabled", Type: "webhook.disabled", Eventable: events.Ref{Type: "webhook", ID: "ep_1"},
		Creator: events.Ref{Type: events.SystemCreator, ID: "webhooker"}, Particulars: json.RawMessage(`{"reason":"410 Gone"}`)}
	fmt.Fprintf(&b, "-- %-16s %s\n", disabled.Type, render.Builtins().Render(disabled).Markdown())
	for _, op := range []struct{ action, particulars string }{
		{"attempt_failing", `{"endpoint_id":"ep_1","failures":3,"failing_since":"2026-01-02T03:04:05Z","last_error_class":"timeout"}`},
		{"attempt_exhausted", `{"endpoint_id":"ep_1","delivery_id":"d1","event_id":"e1","event_type":"card.closed","attempts":8,"last_error_class":"status"}`},
		{"recovered", `{"endpoint_id":"ep_1","failing_since":"2026-01-02T03:04:05Z"}`},
	} {
		e := events.Event{Action: op.action, Type: "webhook." + op.action, Eventable: events.Ref{Type: "webhook", ID: "ep_1"},
			Creator: events.Ref{Type: events.SystemCreator, ID: "webhooker"}, Particulars: json.RawMessage(op.particulars)}
		fmt.Fprintf(&b, "-- %-16s %s\n", e.Type, render.Builtins().Render(e).Markdown())
	}
	golden := "testdata/demo.golden"
	if *update {
		require.NoError(t, os.WriteFile(golden, []byte(b.String()), 0o600))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err, "run go test ./internal/render -run TestDemoGolden -update to write it")
	require.Equal(t, string(want), b.String())
}

func event(typ, particulars string, parents ...events.Ref) events.Event {
	eventable, action, _ := strings.Cut(typ, ".")
	return events.Event{Action: action, Type: typ, Eventable: events.Ref{Type: eventable, ID: "c42"},
		Creator: events.Ref{Type: "user", ID: "bob"}, Parents: parents, Particulars: json.RawMessage(particulars)}
}

func TestSentences(t *testing.T) {
	t.Parallel()
	card := events.Ref{Type: "card", ID: "c42"}
	set := render.Builtins()
	for _, c := range []struct {
		e                     events.Event
		markdown, html, slack string
	}{
		{event("comment.created", `{"card_title":"Fix login"}`, card), "bob commented on card *Fix login*", "bob commented on card <em>Fix login</em>", "bob commented on card *Fix login*"},
		{event("card.moved", `{"title":"Fix login","to_column":"Done"}`), "bob moved *Fix login* to Done", "bob moved <em>Fix login</em> to Done", ""},
		{event("card.moved", `{"title":"Fix login","column":"Done","creator_name":"Alice"}`), "Alice moved *Fix login* to Done", "", ""},
		{event("card.moved", `{}`), "bob moved card *c42*", "", ""}, // no column: the generic sentence
		{event("card.assigned", `{"title":"T","assignee_ids":["ana","ben","chloe"]}`), "bob assigned ana, ben and chloe to *T*", "", ""},
		{event("card.closed", `{"title":"<script>x</script> & *b*"}`), `bob closed *<script>x</script> & \*b\**`,
			"bob closed <em>&lt;script&gt;x&lt;/script&gt; &amp; *b*</em>", "bob closed *&lt;script&gt;x&lt;/script&gt; &amp; ∗b∗*"},
		{event("comment.created", `{}`, card), "bob commented on card *c42*", "", ""},
		{event("board.archived_all", `{"name":"Roadmap"}`), "bob archived all board *Roadmap*", "", ""},
		{event("card.closed", `{"title":"a\nb   c"}`), "bob closed *a b c*", "", ""},
		{event("card.closed", `[1]`), "bob closed *c42*", "", ""},
	} {
		s := set.Render(c.e)
		require.Equal(t, c.markdown, s.Markdown(), c.e.Type)
		if c.html != "" {
			require.Equal(t, c.html, s.HTML())
		}
		if c.slack != "" {
			require.Equal(t, c.slack, s.Slack())
		}
	}
	require.Equal(t, "card *Fix login*", set.Name(event("comment.created", `{"card_title":"Fix login"}`, card), card).Markdown())
	require.Equal(t, "card *c42*", set.Name(event("comment.created", `{}`, card), card).Markdown())
}

func TestParse(t *testing.T) {
	t.Parallel()
	for src, want := range map[string]string{
		"{creator} moved *{title}* to {to_column|'a column'}": "",
		`price \*{n}\* \{literal\}`:                           "",
		"":                                                    "is empty",
		"{creator":                                            "without its }",
		"creator}":                                            "without its {",
		"*{title}":                                            "not closed",
		"{ti tle}":                                            "is not a field name",
		"{a|b|c|d|e|f|g|h|i}":                                 "more than 8 alternatives",
		strings.Repeat("x", render.MaxTemplateLen+1): "longer than",
	} {
		_, err := render.Parse(src)
		if want == "" {
			require.NoError(t, err, src)
		} else {
			require.ErrorContains(t, err, want, src)
		}
	}
	errs := render.ParseTemplates(map[string]string{"card.moved": "{x", "Card": "ok", "card.closed": "fine"})
	require.Len(t, errs, 2)
	require.Equal(t, `templates["Card"]`, errs[0].Field)
	require.Equal(t, `templates["card.moved"]`, errs[1].Field)
}
