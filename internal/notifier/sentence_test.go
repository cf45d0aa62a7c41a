package notifier

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestInboxSentences: inbox items carry the sentence of their latest
// event and the group's name (internal/render), and a tenant's templates
// (PUT /v1/sentence-templates, admin) change them for that tenant only.
func TestInboxSentences(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	b.watch(t, "acme", "card", "c1", "u1")
	b.publish(t, ev("cm1", "comment", "created", "bob", `{"card_title":"Fix <login>"}`, card, board))
	first := func() map[string]any {
		_, body := b.call(t, "acme-read", "GET", "/v1/users/u1/notifications", nil)
		return body["notifications"].([]any)[0].(map[string]any)
	}
	n := first()
	require.Equal(t, map[string]any{"text": "bob commented on card Fix <login>", "html": "bob commented on card <em>Fix &lt;login&gt;</em>"}, n["sentence"])
	require.Equal(t, map[string]any{"text": "card Fix <login>", "html": "card <em>Fix &lt;login&gt;</em>"}, n["group_name"])

	code, body := b.call(t, "acme-read", "PUT", "/v1/sentence-templates", map[string]any{"templates": map[string]string{}})
	require.Equal(t, http.StatusForbidden, code, "%v", body)
	code, body = b.call(t, "acme-admin", "PUT", "/v1/sentence-templates", map[string]any{"templates": map[string]string{"comment.created": "{creator", "Comment": "x"}})
	require.Equal(t, http.StatusUnprocessableEntity, code)
	require.Equal(t, []string{`templates["Comment"]`, `templates["comment.created"]`}, fields(body))
	code, body = b.call(t, "acme-admin", "PUT", "/v1/sentence-templates", map[string]any{"templates": map[string]string{"comment.created": "{creator} replied on *{card_title}*"}})
	require.Equal(t, http.StatusOK, code, "%v", body)
	require.Equal(t, map[string]any{"comment.created": "{creator} replied on *{card_title}*"}, body["templates"])
	require.NotEmpty(t, body["builtin"])
	require.Equal(t, "bob replied on Fix <login>", first()["sentence"].(map[string]any)["text"])

	_, body = b.call(t, "other-admin", "GET", "/v1/sentence-templates", nil)
	require.Empty(t, body["templates"], "templates are per tenant")

	code, _ = b.call(t, "acme-admin", "DELETE", "/v1/sentence-templates", nil)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "bob commented on card Fix <login>", first()["sentence"].(map[string]any)["text"])
}
