package webhooker

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/eventline/eventline/pkg/events"
)

// slackBody renders an event as a Slack incoming-webhook message: one
// readable sentence, with &, < and > escaped as Slack requires (as Fizzy
// does), so user-controlled ids cannot inject links or mentions.
func slackBody(e events.Event) ([]byte, error) {
	return json.Marshal(map[string]string{"text": slackText(e)})
}

func slackText(e events.Event) string {
	who := e.Creator.ID
	if e.Creator.Type == events.SystemCreator {
		who = "eventline"
	}
	what := fmt.Sprintf("%s %s", e.Eventable.Type, e.Eventable.ID)
	var verb string
	switch e.Type {
	case "card.published":
		verb = "published " + what
	case "card.assigned":
		verb = "assigned " + what
	case "card.closed":
		verb = "closed " + what
	case "card.reopened":
		verb = "reopened " + what
	case "card.moved":
		verb = "moved " + what
	case "comment.created":
		verb = "commented"
		if len(e.Parents) > 0 {
			verb += fmt.Sprintf(" on %s %s", e.Parents[0].Type, e.Parents[0].ID)
		}
	case "webhook.disabled":
		verb = "disabled webhook " + e.Eventable.ID + " after repeated failures"
	default:
		verb = fmt.Sprintf("%s %s (%s)", strings.ReplaceAll(e.Action, "_", " "), what, e.Type)
	}
	text := who + " " + verb
	if e.Type != "comment.created" && len(e.Parents) > 0 {
		p := e.Parents[len(e.Parents)-1] // the outermost container
		text += fmt.Sprintf(" in %s %s", p.Type, p.ID)
	}
	return slackEscape(text)
}

var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

func slackEscape(s string) string { return slackEscaper.Replace(s) }
