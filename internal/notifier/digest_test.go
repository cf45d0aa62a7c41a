package notifier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net/http"
	"net/mail"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/pkg/events"
)

// TestDigestOverSMTP: a digest window opens at the first notification,
// goes out over real SMTP when it ends with only the unread notifications
// of the window, grouped, with one-click unsubscribe that works.
func TestDigestOverSMTP(t *testing.T) {
	t.Parallel()
	b := setup(t, options{cfg: Config{Digest: DigestConfig{GroupURL: "https://app.example.com/{type}s/{id}"}}})
	ctx := context.Background()
	b.setPrefs(t, "u1", "ana@example.com", "every_few_hours", "Europe/Paris")
	b.watch(t, "acme", "card", "c1", "u1")
	b.watch(t, "acme", "card", "c2", "u1")
	b.watch(t, "acme", "card", "c3", "u1")
	start := b.clock.Now()
	b.publish(t, ev("cm1", "comment", "created", "u2", "", card))
	b.clock.Add(time.Hour)
	b.publish(t, ev("cm2", "comment", "created", "u3", `{"card_title":"Fix <login>","body":"Looks\ngood to me"}`, card),
		ev("cm3", "comment", "created", "u2", "", events.Ref{Type: "card", ID: "c2"}),
		ev("cm4", "comment", "created", "u2", "", events.Ref{Type: "card", ID: "c3"}))
	// c3 is read before the window ends: not in the digest.
	_, body := b.call(t, "acme-read", "GET", "/v1/users/u1/notifications", nil)
	for _, n := range body["notifications"].([]any) {
		m := n.(map[string]any)
		if m["group"].(map[string]any)["id"] == "c3" {
			code, _ := b.call(t, "acme-read", "POST", "/v1/users/u1/notifications/"+m["id"].(string)+"/read", nil)
			require.Equal(t, http.StatusOK, code)
		}
	}
	var startsAt, endsAt time.Time
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT starts_at, ends_at FROM notify.digests WHERE tenant = 'acme' AND user_id = 'u1' AND status = 'pending'`).Scan(&startsAt, &endsAt))
	require.True(t, startsAt.Equal(start), "anchored at the first notification: %v", startsAt)
	require.Equal(t, 4*time.Hour, endsAt.Sub(startsAt))

	// Not due yet.
	b.clock.Add(2*time.Hour + 59*time.Minute)
	n, err := b.svc.SendDueDigests(ctx)
	require.NoError(t, err)
	require.Zero(t, n)
	require.Empty(t, b.smtp.messages())

	// The preview shows the digest that is about to go out.
	code, preview := b.call(t, "acme-read", "GET", "/v1/digests/preview?user=u1", nil)
	require.Equal(t, http.StatusOK, code, "%v", preview)
	require.Equal(t, true, preview["window_open"])
	require.EqualValues(t, 2, preview["notifications"])
	code, bad := b.call(t, "acme-read", "GET", "/v1/digests/preview?format=pdf", nil)
	require.Equal(t, http.StatusBadRequest, code)
	require.ElementsMatch(t, []string{"user", "format"}, fields(bad))

	b.clock.Add(2 * time.Minute)
	n, err = b.svc.SendDueDigests(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	msgs := waitMail(t, b.smtp, 1)
	m := msgs[0]
	require.Equal(t, "notify@example.com", m.from)
	require.Equal(t, []string{"ana@example.com"}, m.to)
	h := m.msg.Header
	from, err := mail.ParseAddress(h.Get("From"))
	require.NoError(t, err)
	require.Equal(t, "notify@example.com", from.Address)
	require.Equal(t, "eventline", from.Name)
	require.Equal(t, "<ana@example.com>", h.Get("To"))
	subject, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
	require.NoError(t, err)
	require.Equal(t, "3 new notifications in 2 conversations", subject)
	require.Equal(t, "List-Unsubscribe=One-Click", h.Get("List-Unsubscribe-Post"))
	unsub := regexp.MustCompile(`<(http[^>]+)>`).FindStringSubmatch(h.Get("List-Unsubscribe"))
	require.Len(t, unsub, 2, h.Get("List-Unsubscribe"))
	require.True(t, strings.HasPrefix(unsub[1], b.api+"/v1/unsubscribe/"), unsub[1])
	require.Contains(t, h.Get("List-Unsubscribe"), "<mailto:unsubscribe@example.com?subject=unsubscribe>")
	require.NotEmpty(t, h.Get("Message-ID"))
	date, err := h.Date()
	require.NoError(t, err)
	require.True(t, date.Equal(b.clock.Now().Truncate(time.Second)), "%v", date)
	require.Contains(t, h.Get("Date"), "+0100", "the user's time zone")

	// Both alternatives, grouped by card, without the read one.
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	require.NoError(t, err)
	require.Equal(t, "multipart/alternative", mt)
	mr := multipart.NewReader(strings.NewReader(string(m.body)), params["boundary"])
	parts := map[string]string{}
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		raw, err := io.ReadAll(p) // multipart.Reader decodes quoted-printable
		require.NoError(t, err)
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		parts[ct] = string(raw)
	}
	require.Contains(t, parts, "text/plain")
	require.Contains(t, parts, "text/html")
	text := strings.ReplaceAll(parts["text/plain"], "\r\n", "\n")
	require.Contains(t, text, "card Fix <login> — 2 new\n  u3 commented on card Fix <login> (Wed 25 Nov 11:00 CET)\n  “Looks good to me”\n  https://app.example.com/cards/c1\n")
	require.Contains(t, text, "card c2 — 1 new\n  u2 commented on card c2 (")
	require.Equal(t, preview["text"], text, "the preview is the digest")
	require.Equal(t, preview["subject"], subject)
	require.Contains(t, parts["text/html"], `<a href="https://app.example.com/cards/c1" style="color: #0b57d0; text-decoration: none">card <em>Fix &lt;login&gt;</em></a>`)
	require.NotContains(t, text, "card c3")
	require.Contains(t, text, "(Wed 25 Nov 11:00 CET)", "times in the user's zone")
	require.Contains(t, parts["text/html"], `href="`+unsub[1]+`"`)

	// Sent once: nothing more is due.
	b.clock.Add(time.Hour)
	n, err = b.svc.SendDueDigests(ctx)
	require.NoError(t, err)
	require.Zero(t, n)

	// The unsubscribe link: GET confirms without unsubscribing, the
	// one-click POST unsubscribes.
	resp, err := http.Get(unsub[1])
	require.NoError(t, err)
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(page), `<form method="post">`)
	_, prefs := b.call(t, "acme-read", "GET", "/v1/users/u1/preferences", nil)
	require.Equal(t, "every_few_hours", prefs["digest"])
	resp, err = http.Post(unsub[1], "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	_, prefs = b.call(t, "acme-read", "GET", "/v1/users/u1/preferences", nil)
	require.Equal(t, "never", prefs["digest"])
	require.Equal(t, "ana@example.com", prefs["email"])

	// A forged token is refused.
	u, _ := url.Parse(unsub[1])
	tenant, user, err := parseUnsubscribeToken(secret, strings.TrimPrefix(u.Path, "/v1/unsubscribe/"))
	require.NoError(t, err)
	require.Equal(t, [2]string{"acme", "u1"}, [2]string{tenant, user})
	forged := unsubscribeToken([]byte("another secret"), "acme", "u2")
	resp, err = http.Post(b.api+"/v1/unsubscribe/"+forged, "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	// Unsubscribed: new notifications open no window.
	b.publish(t, ev("cm5", "comment", "created", "u2", "", card))
	var pending int
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*) FROM notify.digests WHERE tenant = 'acme' AND status = 'pending'`).Scan(&pending))
	require.Zero(t, pending)
}

// TestDigestWindowsInTimeZone: daily and weekly windows are calendar days
// in the user's zone (23 hours across the spring DST change).
func TestDigestWindowsInTimeZone(t *testing.T) {
	t.Parallel()
	paris, err := time.LoadLocation("Europe/Paris")
	require.NoError(t, err)
	start := time.Date(2026, 3, 28, 12, 0, 0, 0, paris) // the day before the change
	require.Equal(t, 23*time.Hour, windowEnd(start, DigestDaily, paris).Sub(start))
	require.Equal(t, 7*24*time.Hour-time.Hour, windowEnd(start, DigestWeekly, paris).Sub(start))
	require.Equal(t, 4*time.Hour, windowEnd(start, DigestEveryFewHours, paris).Sub(start))
	require.Equal(t, 24*time.Hour, windowEnd(start, DigestDaily, time.UTC).Sub(start))
}

// TestDigestRetryAfterSMTPFailure: a refused send is retried later and the
// digest goes out once.
func TestDigestRetryAfterSMTPFailure(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	ctx := context.Background()
	b.setPrefs(t, "u1", "ana@example.com", "daily", "UTC")
	b.watch(t, "acme", "card", "c1", "u1")
	b.publish(t, ev("cm1", "comment", "created", "u2", "", card))
	b.smtp.failNext.Store(1)
	b.clock.Add(25 * time.Hour)
	n, err := b.svc.SendDueDigests(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Empty(t, b.smtp.messages())
	var attempts int
	var lastErr string
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT attempts, last_error FROM notify.digests WHERE tenant = 'acme' AND status = 'pending'`).Scan(&attempts, &lastErr))
	require.Equal(t, 1, attempts)
	require.Contains(t, lastErr, "451")

	n, err = b.svc.SendDueDigests(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "not before the retry delay")
	b.clock.Add(time.Minute)
	n, err = b.svc.SendDueDigests(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Len(t, waitMail(t, b.smtp, 1), 1)
	b.clock.Add(time.Hour)
	n, err = b.svc.SendDueDigests(ctx)
	require.NoError(t, err)
	require.Zero(t, n)
	require.Len(t, b.smtp.messages(), 1)
}

// TestTwoReplicasSendEachDigestOnce: two notifier services on the same
// database and stream, both sending due digests at the same time.
func TestTwoReplicasSendEachDigestOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, options{cfg: Config{Digest: DigestConfig{Batch: 7}}})
	second := b.startService(t, Config{Digest: DigestConfig{Batch: 7}}, nil)
	ctx := context.Background()
	const users = 60
	var es []events.Event
	for i := range users {
		u := fmt.Sprintf("r%d", i)
		b.setPrefs(t, u, u+"@example.com", "every_few_hours", "UTC")
		es = append(es, ev(fmt.Sprintf("c%d", i), "card", "assigned", "boss", fmt.Sprintf(`{"assignee_ids": [%q]}`, u)))
	}
	b.publish(t, es...)
	var pending int
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*) FROM notify.digests WHERE status = 'pending'`).Scan(&pending))
	require.Equal(t, users, pending)
	b.clock.Add(5 * time.Hour)
	var wg sync.WaitGroup
	for _, s := range []*Service{b.svc, second, b.svc, second} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.SendDueDigests(ctx)
			require.NoError(t, err)
		}()
	}
	wg.Wait()
	msgs := waitMail(t, b.smtp, users)
	perRcpt := map[string]int{}
	for _, m := range msgs {
		perRcpt[m.to[0]]++
	}
	require.Len(t, perRcpt, users)
	for r, n := range perRcpt {
		require.Equal(t, 1, n, r)
	}
	var sent int
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*) FROM notify.digests WHERE status = 'sent'`).Scan(&sent))
	require.Equal(t, users, sent)
}

// TestFrequencyChangeFlushesPendingDigest: as in Fizzy, changing the
// frequency sends the pending digest at the next pass; "never" cancels it.
func TestFrequencyChangeFlushesPendingDigest(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	ctx := context.Background()
	b.setPrefs(t, "u1", "ana@example.com", "weekly", "UTC")
	b.setPrefs(t, "u2", "bo@example.com", "weekly", "UTC")
	b.watch(t, "acme", "card", "c1", "u1")
	b.watch(t, "acme", "card", "c1", "u2")
	b.publish(t, ev("cm1", "comment", "created", "u9", "", card))
	b.clock.Add(time.Minute)
	b.setPrefs(t, "u1", "ana@example.com", "daily", "UTC")
	b.setPrefs(t, "u2", "bo@example.com", "never", "UTC")
	n, err := b.svc.SendDueDigests(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	msgs := waitMail(t, b.smtp, 1)
	require.Equal(t, []string{"ana@example.com"}, msgs[0].to)
	var status string
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT status FROM notify.digests WHERE tenant = 'acme' AND user_id = 'u2'`).Scan(&status))
	require.Equal(t, "skipped", status)
}

// digestLineRE is one notification of a digest's text part.
// The comment bursts carry their event id as the comment's body, which a
// digest quotes.
var digestLineRE = regexp.MustCompile(`(?m)^card (\S+) — (\d+) new\r?\n  .*\n  “(\S+)”\r?$`)

// digestLines returns the (group, count, last event) lines of a digest.
func digestLines(t *testing.T, m received) [][3]string {
	t.Helper()
	_, params, err := mime.ParseMediaType(m.msg.Header.Get("Content-Type"))
	require.NoError(t, err)
	mr := multipart.NewReader(strings.NewReader(string(m.body)), params["boundary"])
	for {
		p, err := mr.NextPart()
		require.NoError(t, err, "a text/plain part")
		raw, err := io.ReadAll(p)
		require.NoError(t, err)
		if strings.HasPrefix(p.Header.Get("Content-Type"), "text/plain") {
			var out [][3]string
			for _, l := range digestLineRE.FindAllStringSubmatch(string(raw), -1) {
				out = append(out, [3]string{l[1], l[2], l[3]})
			}
			return out
		}
	}
}

// TestDigestWindowsUnderConcurrentWriters: events applied in concurrent
// transactions (from concurrent appenders, each reading a clock that moves
// on every reading), reads through the API, and digest passes with the
// clock jumping past every window, all at once. Every notification is
// emailed in its final state (its last change falls in exactly one
// window, which is sent), and no notification state (group and last
// event) is emailed twice.
func TestDigestWindowsUnderConcurrentWriters(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	ctx := context.Background()
	users := []string{"d0", "d1", "d2", "d3"}
	cards := []string{"g0", "g1", "g2", "g3", "g4", "g5", "g6", "g7"}
	for _, u := range users {
		b.setPrefs(t, u, u+"@example.com", "every_few_hours", "UTC")
		for _, c := range cards {
			b.watch(t, "acme", "card", c, u)
		}
	}
	b.clock.Tick(time.Microsecond)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	appended := make(chan struct{})
	var others sync.WaitGroup
	defer others.Wait()
	stopOthers := sync.OnceFunc(func() { close(appended) })
	defer stopOthers() // also when the test stops early
	others.Add(2)
	go func() { // reads through the API
		defer others.Done()
		r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 8))
		for {
			select {
			case <-appended:
				return
			default:
			}
			u := users[r.IntN(len(users))]
			path := "/v1/users/" + u + "/notifications/read-all"
			var id int64
			if r.IntN(10) > 0 && b.pool.QueryRow(ctx, `SELECT id FROM notify.notifications WHERE tenant = 'acme' AND user_id = $1 ORDER BY random() LIMIT 1`, u).Scan(&id) == nil {
				path = fmt.Sprintf("/v1/users/%s/notifications/%d/read", u, id)
			}
			if code, err := b.post("acme-read", path); err != nil || code != http.StatusOK {
				t.Errorf("POST %s: %d %v", path, code, err)
				return
			}
		}
	}()
	go func() { // digest passes, every window due at each
		defer others.Done()
		for {
			select {
			case <-appended:
				return
			default:
			}
			b.clock.Add(4*time.Hour + time.Minute)
			if _, err := b.svc.SendDueDigests(ctx); !assertNoErr(t, err) {
				return
			}
		}
	}()
	b.appendConcurrently(t, commentBurst(rng, 300, 8, cards), 2)
	b.waitProcessed(t)
	stopOthers()
	others.Wait()
	// Send every window left, and those they open.
	for range 10 {
		var pending int
		require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*) FROM notify.digests WHERE status = 'pending'`).Scan(&pending))
		if pending == 0 {
			break
		}
		b.clock.Add(5 * time.Hour)
		_, err := b.svc.SendDueDigests(ctx)
		require.NoError(t, err)
	}
	var sent int
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*) FROM notify.digests WHERE status = 'sent'`).Scan(&sent))
	msgs := waitMail(t, b.smtp, sent)
	require.Len(t, msgs, sent)
	require.Greater(t, sent, len(users), "several windows per user")
	t.Logf("%d digests sent", sent)

	last := map[[2]string][3]string{} // (user, group) -> the last line that named it
	for _, m := range msgs {
		u := strings.TrimSuffix(m.to[0], "@example.com")
		seen := map[[2]string]bool{}
		for _, l := range digestLines(t, m) {
			k := [2]string{u, l[0]}
			require.False(t, seen[k], "%s: group %s twice in one digest", u, l[0])
			seen[k] = true
			if prev, ok := last[k]; ok {
				require.NotEqual(t, prev[2], l[2], "%s: group %s emailed twice with last event %s", u, l[0], l[2])
			}
			last[k] = l
		}
	}
	rows, err := b.pool.Query(ctx, `SELECT user_id, group_id, unread_count, last_event->>'id' FROM notify.notifications
		WHERE tenant = 'acme' AND read_at IS NULL`)
	require.NoError(t, err)
	defer rows.Close() // also when an assertion below stops the test
	unread := 0
	for rows.Next() {
		var u, g, ev string
		var n int
		require.NoError(t, rows.Scan(&u, &g, &n, &ev))
		unread++
		l, ok := last[[2]string{u, g}]
		require.True(t, ok, "%s's unread notification of %s (last event %s) was never emailed", u, g, ev)
		require.Equal(t, [3]string{g, strconv.Itoa(n), ev}, l, "%s's unread notification of %s: its last digest has its final state", u, g)
	}
	require.NoError(t, rows.Err())
	require.Positive(t, unread)
}
