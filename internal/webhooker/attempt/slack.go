package attempt

import (
	"encoding/json"

	"github.com/eventline/eventline/internal/render"
	"github.com/eventline/eventline/pkg/events"
)

// slackBody renders an event as a Slack incoming-webhook message: the
// sentence every other place shows (internal/render, with the tenant's
// templates) in Slack mrkdwn, with &, < and > escaped as Slack requires,
// so user-controlled text cannot inject links or mentions, and the
// outermost container the event belongs to.
func slackBody(set render.Set, e events.Event) ([]byte, error) {
	return json.Marshal(map[string]string{"text": slackText(set, e)})
}

func slackText(set render.Set, e events.Event) string {
	text := set.Render(e).Slack()
	if n := len(e.Parents); n > 0 {
		p := e.Parents[n-1] // the outermost container
		text += " in " + render.Sentence{{Text: p.Type + " " + p.ID}}.Slack()
	}
	return text
}
