package render_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/eventline/eventline/internal/render"
	"github.com/eventline/eventline/pkg/events"
)

// FuzzParse: any template text either parses or is refused with an error;
// a parsed one renders any particulars without panicking, and its HTML
// form holds no markup but the <em> the renderer adds.
func FuzzParse(f *testing.F) {
	for _, s := range []string{render.Generic, render.Builtin["card.moved"], `\*{a|'x'}\{`, "*{title}*", "{parent.card|'<b>'}", "{"} {
		f.Add(s, `{"title":"<script>","a":["x","<y>"]}`)
	}
	f.Fuzz(func(t *testing.T, src, particulars string) {
		tpl, err := render.Parse(src)
		if err != nil {
			return
		}
		if tpl.Source() != src {
			t.Fatalf("source %q kept as %q", src, tpl.Source())
		}
		e := events.Event{Action: "moved", Type: "card.moved", Eventable: events.Ref{Type: "card", ID: "<c1>"},
			Creator: events.Ref{Type: "user", ID: "u&1"}, Parents: []events.Ref{{Type: "card", ID: "<p>"}}, Particulars: json.RawMessage(particulars)}
		s, _ := tpl.Execute(render.FieldsOf(e))
		rest := strings.NewReplacer("<em>", "", "</em>", "").Replace(s.HTML())
		if strings.ContainsAny(rest, "<>") {
			t.Fatalf("template %q renders markup: %q", src, s.HTML())
		}
		_ = s.Slack()
		_ = s.Markdown()
	})
}
