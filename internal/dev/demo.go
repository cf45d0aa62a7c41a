package dev

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"
)

// DemoOptions configure the demo stream.
type DemoOptions struct {
	BaseURL string  // the eventline API
	Key     string  // a key with ingest (and admin, to register the sink) scope
	Rate    float64 // events per second after the initial backlog; default 5
	SinkURL string  // if set, a webhook endpoint for every event is pointed here
	Seed    uint64
	Log     *slog.Logger
}

// RunDemo posts a Fizzy-like stream of activity until ctx ends: boards get
// cards that are published, assigned, moved between columns, commented on
// (with mentions) and closed, by a small team of users. It first registers
// a webhook endpoint to SinkURL and sets the team's notification
// preferences (emails at example.com, every kind of digest), and starts with a backlog so the timelines, the inbox and the
// webhook log have something in them at once.
func RunDemo(ctx context.Context, o DemoOptions) error {
	if o.Rate <= 0 {
		o.Rate = 5
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	c := &demoClient{base: o.BaseURL, key: o.Key, http: &http.Client{Timeout: 30 * time.Second}}
	if o.SinkURL != "" {
		if err := c.send(ctx, http.MethodPost, "/v1/webhooks", map[string]any{
			"url": o.SinkURL, "events": []string{"*"}, "description": "eventline dev --demo sink",
		}, http.StatusCreated); err != nil {
			return fmt.Errorf("register the demo webhook endpoint: %w", err)
		}
		// Every webhooker replica sees a new endpoint within a second.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(1500 * time.Millisecond):
		}
	}
	for i, u := range DemoUsers {
		digest := []string{"every_few_hours", "daily", "weekly", "never"}[i%4]
		if err := c.send(ctx, http.MethodPut, "/v1/users/"+u+"/preferences", map[string]any{
			"email": u + "@example.com", "digest": digest, "timezone": "Europe/Madrid",
		}, http.StatusOK); err != nil {
			return fmt.Errorf("set the demo team's preferences: %w", err)
		}
	}
	g := NewDemoGenerator(o.Seed)
	if err := c.post(ctx, g.Next(200)); err != nil {
		return err
	}
	o.Log.Info("demo backlog posted", "events", 200)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	carry := 0.0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		carry += o.Rate
		n := int(carry)
		carry -= float64(n)
		if n == 0 {
			continue
		}
		if err := c.post(ctx, g.Next(n)); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			o.Log.Warn("demo post failed; retrying next tick", "error", err)
		}
	}
}

// DemoUsers is the demo team.
var DemoUsers = []string{"ana", "ben", "chloe", "dev", "eli", "fatima", "gus", "hana"}

var (
	demoBoards  = []string{"roadmap", "bugs", "launch"}
	demoColumns = []string{"Triage", "Doing", "Review", "Done"}
	demoTitles  = []string{
		"Export timelines as CSV", "Slow inbox on mobile", "Rename boards", "Dark mode for digests",
		"Webhook retries look stuck", "Invite guests to a board", "Keyboard shortcuts", "Card templates",
		"Search across boards", "Pin comments", "Due dates in the calendar", "Bulk close cards",
	}
)

// DemoGenerator produces the demo's events. It is deterministic for a seed.
type DemoGenerator struct {
	rnd   *rand.Rand
	cards []*demoCard
	next  int
	epoch string
}

type demoCard struct {
	id, board, column, title string
	assignees                []string
	closed                   bool
}

// NewDemoGenerator returns a generator; ids are unique per generator run
// (they carry its start time), so a restarted demo adds new cards.
func NewDemoGenerator(seed uint64) *DemoGenerator {
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	return &DemoGenerator{rnd: rand.New( //nolint:gosec // demo data, not secrets
		rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), epoch: fmt.Sprintf("%x", time.Now().Unix())}
}

// Next returns n events.
func (g *DemoGenerator) Next(n int) []map[string]any {
	out := make([]map[string]any, 0, n)
	for len(out) < n {
		out = append(out, g.one())
	}
	return out
}

func (g *DemoGenerator) user() string { return DemoUsers[g.rnd.IntN(len(DemoUsers))] }

func (g *DemoGenerator) open() *demoCard {
	var open []*demoCard
	for _, c := range g.cards {
		if !c.closed {
			open = append(open, c)
		}
	}
	if len(open) == 0 {
		return nil
	}
	return open[g.rnd.IntN(len(open))]
}

func (g *DemoGenerator) one() map[string]any {
	c := g.open()
	roll := g.rnd.IntN(100)
	switch {
	case c == nil || roll < 20 || len(g.cards) < 5:
		return g.publish()
	case roll < 35:
		return g.assign(c)
	case roll < 55:
		return g.move(c)
	case roll < 90:
		return g.comment(c)
	default:
		return g.close(c)
	}
}

func (g *DemoGenerator) event(action string, eventable map[string]string, creator string, parents []map[string]string, particulars map[string]any) map[string]any {
	g.next++
	return map[string]any{
		"id":          fmt.Sprintf("demo-%s-%d", g.epoch, g.next),
		"action":      action,
		"eventable":   eventable,
		"creator":     map[string]string{"type": "user", "id": g.userOr(creator)},
		"parents":     parents,
		"particulars": particulars,
	}
}

func (g *DemoGenerator) userOr(u string) string {
	if u == "" {
		return g.user()
	}
	return u
}

func ref(typ, id string) map[string]string { return map[string]string{"type": typ, "id": id} }

func (g *DemoGenerator) publish() map[string]any {
	c := &demoCard{
		id:     fmt.Sprintf("c%s-%d", g.epoch, len(g.cards)+1),
		board:  demoBoards[g.rnd.IntN(len(demoBoards))],
		column: demoColumns[0],
		title:  demoTitles[g.rnd.IntN(len(demoTitles))],
	}
	g.cards = append(g.cards, c)
	return g.event("published", ref("card", c.id), "", []map[string]string{ref("board", c.board)},
		map[string]any{"title": c.title, "column": c.column})
}

func (g *DemoGenerator) assign(c *demoCard) map[string]any {
	a := g.user()
	c.assignees = append(c.assignees, a)
	return g.event("assigned", ref("card", c.id), "", []map[string]string{ref("board", c.board)},
		map[string]any{"title": c.title, "assignee_ids": []string{a}})
}

func (g *DemoGenerator) move(c *demoCard) map[string]any {
	from := c.column
	c.column = demoColumns[1+g.rnd.IntN(len(demoColumns)-1)]
	return g.event("moved", ref("card", c.id), "", []map[string]string{ref("board", c.board)},
		map[string]any{"title": c.title, "from_column": from, "to_column": c.column})
}

func (g *DemoGenerator) comment(c *demoCard) map[string]any {
	author := g.user()
	body := "Looks good to me."
	var mentions []string
	if g.rnd.IntN(3) == 0 {
		m := g.user()
		if m != author {
			mentions = append(mentions, m)
			body = "@" + m + " can you take a look?"
		}
	}
	g.next++
	id := fmt.Sprintf("m%s-%d", g.epoch, g.next)
	p := map[string]any{"body": body, "card_title": c.title}
	if len(mentions) > 0 {
		p["mentioned_user_ids"] = mentions
	}
	return g.event("created", ref("comment", id), author, []map[string]string{ref("card", c.id), ref("board", c.board)}, p)
}

func (g *DemoGenerator) close(c *demoCard) map[string]any {
	c.closed = true
	return g.event("closed", ref("card", c.id), "", []map[string]string{ref("board", c.board)},
		map[string]any{"title": c.title, "column": "Done"})
}

type demoClient struct {
	base, key string
	http      *http.Client
}

func (c *demoClient) post(ctx context.Context, evs []map[string]any) error {
	return c.send(ctx, http.MethodPost, "/v1/events", map[string]any{"events": evs}, http.StatusAccepted)
}

func (c *demoClient) send(ctx context.Context, method, path string, body any, want int) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, msg)
	}
	return nil
}
