package dev

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"time"

	"github.com/eventline/eventline/internal/httpapi"
	"github.com/eventline/eventline/pkg/events"
)

// componentsPage is GET /dev/components?user=&board=: the drop-in
// components (docs/browser.md) for one user and board, with a token minted
// as an application's backend would, to try them in a browser.
func componentsPage(base, key, defaultUser, defaultBoard string) http.Handler {
	client := &http.Client{Timeout: 10 * time.Second}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		user, board := defaultUser, defaultBoard
		if v := q.Get("user"); v != "" {
			user = v
		}
		if v := q.Get("board"); v != "" {
			board = v
		}
		errs := append(events.CheckRefID("user", user), events.CheckRefID("board", board)...)
		if len(errs) > 0 {
			httpapi.ValidationFailed(w, "fix the listed parameters", errs)
			return
		}
		token, err := mintToken(r.Context(), client, base, key, user, events.Ref{Type: "board", ID: board})
		if err != nil {
			httpapi.Unavailable(w, time.Second, "cannot mint a user token: "+err.Error())
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_ = componentsHTML.Execute(w, map[string]string{"Token": token, "User": user, "Board": board})
	})
}

func mintToken(ctx context.Context, client *http.Client, base, key, user string, board events.Ref) (string, error) {
	body, _ := json.Marshal(map[string]any{"user_id": user, "ttl_seconds": 3600, "timelines": []events.Ref{board}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/user-tokens", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		Token  string `json:"token"`
		Detail string `json:"detail"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("POST /v1/user-tokens: %d %s", resp.StatusCode, out.Detail)
	}
	return out.Token, nil
}

var componentsHTML = template.Must(template.New("components").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>eventline components — {{.User}}</title>
<style>body { font-family: -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 0; background: #f6f7f9; color: #1f2328; }
nav { display: flex; justify-content: space-between; align-items: center; padding: 12px 24px; background: #fff; border-bottom: 1px solid #d1d9e0; }
main { max-width: 720px; margin: 24px auto; padding: 0 24px; } code { background: #eef1f4; padding: 1px 4px; border-radius: 4px; }</style>
<script src="/components/eventline.js"></script></head>
<body><nav><strong>eventline dev · {{.User}}</strong><eventline-inbox token="{{.Token}}"></eventline-inbox></nav>
<main><p>The inbox of <code>{{.User}}</code> and the timeline of board <code>{{.Board}}</code>, with a user token valid for an hour
(<code>?user=</code>, <code>?board=</code> to change them). See docs/browser.md.</p>
<eventline-timeline token="{{.Token}}" type="board" id="{{.Board}}" heading="Board {{.Board}}" poll="2000"></eventline-timeline>
</main></body></html>
`))
