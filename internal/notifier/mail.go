package notifier

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"net/url"
	"strings"
	"time"

	"github.com/eventline/eventline/internal/render"
	"github.com/eventline/eventline/pkg/events"
)

// SMTPMailer sends mail over SMTP: smtp://host:port (STARTTLS when the
// server offers it) or smtps://host:port (TLS from the start), with an
// optional user:password for AUTH PLAIN (which net/smtp only sends over
// TLS or to localhost).
type SMTPMailer struct {
	// RootCAs verifies the server's certificate; nil: the system roots.
	RootCAs  *x509.CertPool
	addr     string
	host     string
	implicit bool
	auth     smtp.Auth
	helo     string
	timeout  time.Duration
}

// NewSMTPMailer parses SMTP_URL.
func NewSMTPMailer(raw string, timeout time.Duration) (*SMTPMailer, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "smtp" && u.Scheme != "smtps") || u.Hostname() == "" {
		return nil, fmt.Errorf("SMTP_URL %q: use smtp://[user:pass@]host:port or smtps://[user:pass@]host:port", redactURL(raw))
	}
	m := &SMTPMailer{host: u.Hostname(), implicit: u.Scheme == "smtps", helo: "localhost", timeout: timeout}
	port := u.Port()
	if port == "" {
		port = map[bool]string{true: "465", false: "587"}[m.implicit]
	}
	m.addr = net.JoinHostPort(m.host, port)
	if u.User != nil {
		pass, _ := u.User.Password()
		m.auth = smtp.PlainAuth("", u.User.Username(), pass, m.host)
	}
	if m.timeout <= 0 {
		m.timeout = 30 * time.Second
	}
	return m, nil
}

// redactURL is raw without its password, for error messages. A URL that
// url.Parse cannot take apart, or takes as opaque ("smtp:user:pass@host"),
// loses everything up to its last "@" after the scheme instead: the
// password may be anywhere in there.
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.Opaque == "" {
		if u.User != nil {
			u.User = url.User(u.User.Username())
		}
		return u.String()
	}
	at := strings.LastIndex(raw, "@")
	if at < 0 {
		return raw
	}
	prefix := ""
	if scheme, rest, ok := strings.Cut(raw[:at], ":"); ok && (strings.EqualFold(scheme, "smtp") || strings.EqualFold(scheme, "smtps")) {
		prefix = scheme + ":"
		if strings.HasPrefix(rest, "//") {
			prefix += "//"
		}
	}
	return prefix + "REDACTED@" + raw[at+1:]
}

// Send delivers msg to every address in to.
func (m *SMTPMailer) Send(ctx context.Context, from string, to []string, msg []byte) error {
	deadline := time.Now().Add(m.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	d := net.Dialer{Deadline: deadline}
	var conn net.Conn
	var err error
	if m.implicit {
		conn, err = (&tls.Dialer{NetDialer: &d, Config: m.tlsConfig()}).DialContext(ctx, "tcp", m.addr)
	} else {
		conn, err = d.DialContext(ctx, "tcp", m.addr)
	}
	if err != nil {
		return fmt.Errorf("connect to SMTP server %s: %w", m.addr, err)
	}
	_ = conn.SetDeadline(deadline)
	c, err := smtp.NewClient(conn, m.host)
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("SMTP greeting: %w", err)
	}
	defer c.Close()
	if err := c.Hello(m.helo); err != nil {
		return fmt.Errorf("SMTP EHLO: %w", err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok && !m.implicit {
		if err := c.StartTLS(m.tlsConfig()); err != nil {
			return fmt.Errorf("SMTP STARTTLS: %w", err)
		}
	}
	if m.auth != nil {
		if err := c.Auth(m.auth); err != nil {
			return fmt.Errorf("SMTP AUTH: %w", err)
		}
	}
	if err := c.Mail(from); err != nil {
		return fmt.Errorf("SMTP MAIL FROM: %w", err)
	}
	for _, rcpt := range to {
		if err := c.Rcpt(rcpt); err != nil {
			return fmt.Errorf("SMTP RCPT TO: %w", err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("SMTP DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("SMTP DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("SMTP DATA: %w", err)
	}
	return c.Quit()
}

func (m *SMTPMailer) tlsConfig() *tls.Config {
	return &tls.Config{ServerName: m.host, MinVersion: tls.VersionTLS12, RootCAs: m.RootCAs}
}

// unsubscribeToken signs (tenant, user) with secret. It does not expire:
// a link in an old digest keeps working.
func unsubscribeToken(secret []byte, tenant, user string) string {
	payload := tenant + "\n" + user
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("eventline-unsubscribe\n" + payload))
	return base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

var errBadToken = errors.New("this unsubscribe link is not valid; use the link from a recent email")

// parseUnsubscribeToken checks a token and returns its tenant and user.
func parseUnsubscribeToken(secret []byte, token string) (tenant, user string, err error) {
	p, sig, ok := strings.Cut(token, ".")
	if !ok || len(token) > 2048 {
		return "", "", errBadToken
	}
	payload, err1 := base64.RawURLEncoding.DecodeString(p)
	got, err2 := base64.RawURLEncoding.DecodeString(sig)
	if err1 != nil || err2 != nil {
		return "", "", errBadToken
	}
	tenant, user, ok = strings.Cut(string(payload), "\n")
	if !ok || len(secret) == 0 {
		return "", "", errBadToken
	}
	want, _ := base64.RawURLEncoding.DecodeString(strings.SplitN(unsubscribeToken(secret, tenant, user), ".", 2)[1])
	if !hmac.Equal(got, want) {
		return "", "", errBadToken
	}
	return tenant, user, nil
}

// unsubscribeURL is the one-click unsubscribe link for a user.
func (c DigestConfig) unsubscribeURL(tenant, user string) string {
	return strings.TrimRight(c.PublicURL, "/") + "/v1/unsubscribe/" + unsubscribeToken(c.Secret, tenant, user)
}

func (c DigestConfig) groupURL(tenant string, g Notification) string {
	if c.GroupURL == "" {
		return ""
	}
	return strings.NewReplacer("{tenant}", url.PathEscape(tenant), "{type}", url.PathEscape(g.Group.Type), "{id}", url.PathEscape(g.Group.ID)).Replace(c.GroupURL)
}

// digestLine is one conversation (notification group) of a digest.
type digestLine struct {
	Group    render.Sentence // "card *Fix login*"
	Count    int
	Sentence render.Sentence // the latest event's
	Excerpt  string          // the latest event's body (a comment's text), shortened
	When     string
	URL      string
}

// GroupHTML and SentenceHTML are the escaped HTML of the sentences.
func (l digestLine) GroupHTML() template.HTML    { return template.HTML(l.Group.HTML()) }    //nolint:gosec // render escapes every part
func (l digestLine) SentenceHTML() template.HTML { return template.HTML(l.Sentence.HTML()) } //nolint:gosec // render escapes every part

type digestView struct {
	Title       string
	Lines       []digestLine
	Unsubscribe string
}

var htmlDigest = template.Must(template.New("digest").Parse(`<!doctype html>
<html><body style="margin: 0; padding: 24px; background: #f6f7f9; font-family: -apple-system, 'Segoe UI', Roboto, sans-serif; color: #1f2328">
<div style="max-width: 560px; margin: 0 auto; background: #fff; border-radius: 8px; padding: 24px">
<h1 style="font-size: 18px; margin: 0 0 16px">{{.Title}}</h1>{{range .Lines}}
<div style="border-top: 1px solid #e5e7eb; padding: 12px 0">
<div style="font-weight: 600">{{if .URL}}<a href="{{.URL}}" style="color: #0b57d0; text-decoration: none">{{.GroupHTML}}</a>{{else}}{{.GroupHTML}}{{end}} <span style="color: #59636e; font-weight: normal">· {{.Count}} new</span></div>
<div style="margin-top: 4px">{{.SentenceHTML}} <small style="color: #59636e">{{.When}}</small></div>{{if .Excerpt}}
<blockquote style="margin: 6px 0 0; padding-left: 10px; border-left: 3px solid #e5e7eb; color: #59636e">{{.Excerpt}}</blockquote>{{end}}
</div>{{end}}
<p style="font-size: 12px; color: #59636e; border-top: 1px solid #e5e7eb; padding-top: 12px">You get this digest because of your notification settings. <a href="{{.Unsubscribe}}" style="color: #59636e">Unsubscribe from these emails</a>.</p>
</div>
</body></html>
`))

// digestMail is a digest's subject and both bodies, before MIME.
type digestMail struct {
	Subject string `json:"subject"`
	Text    string `json:"text"`
	HTML    string `json:"html"`
}

// compose writes a digest: one block per conversation, newest first
// within a type, each with how many are new, the latest event's sentence
// (internal/render, with the tenant's templates), a comment's excerpt and
// the link to the conversation when DIGEST_GROUP_URL is set. The subject
// is the sentence itself when there is one notification.
func (c DigestConfig) compose(set render.Set, tenant, user string, loc *time.Location, items []Notification) (digestMail, error) {
	sortItems(items)
	view := digestView{Unsubscribe: c.unsubscribeURL(tenant, user)}
	total := 0
	for _, n := range items {
		total += n.UnreadCount
		e := lastEventOf(n)
		view.Lines = append(view.Lines, digestLine{
			Group: set.Name(e, n.Group), Count: n.UnreadCount, Sentence: set.Render(e), Excerpt: excerpt(e),
			When: n.UpdatedAt.In(loc).Format("Mon 2 Jan 15:04 MST"), URL: c.groupURL(tenant, n),
		})
	}
	view.Title = fmt.Sprintf("%d new notification%s in %d conversation%s", total, plural(total), len(items), plural(len(items)))
	subject := view.Title
	if total == 1 && len(view.Lines) == 1 {
		subject = view.Lines[0].Sentence.Plain()
	}

	var text strings.Builder
	text.WriteString(view.Title + "\n")
	for _, l := range view.Lines {
		fmt.Fprintf(&text, "\n%s — %d new\n  %s (%s)\n", l.Group.Plain(), l.Count, l.Sentence.Plain(), l.When)
		if l.Excerpt != "" {
			fmt.Fprintf(&text, "  “%s”\n", l.Excerpt)
		}
		if l.URL != "" {
			fmt.Fprintf(&text, "  %s\n", l.URL)
		}
	}
	fmt.Fprintf(&text, "\nUnsubscribe from these emails: %s\n", view.Unsubscribe)
	var html bytes.Buffer
	if err := htmlDigest.Execute(&html, view); err != nil {
		return digestMail{}, err
	}
	return digestMail{Subject: subject, Text: text.String(), HTML: html.String()}, nil
}

// lastEventOf decodes a notification's latest event (a zero event, which
// renders generically, if it does not decode).
func lastEventOf(n Notification) events.Event {
	var e events.Event
	_ = json.Unmarshal(n.LastEvent, &e)
	return e
}

// excerpt is the event's "body" particular, on one line, at most 140
// characters.
func excerpt(e events.Event) string {
	var p struct {
		Body string `json:"body"`
	}
	if json.Unmarshal(e.Particulars, &p) != nil {
		return ""
	}
	b := strings.Join(strings.Fields(p.Body), " ")
	if r := []rune(b); len(r) > 140 {
		b = string(r[:139]) + "…"
	}
	return b
}

// render builds the digest email: plain text and HTML alternatives,
// grouped by conversation, with List-Unsubscribe headers (RFC 2369,
// RFC 8058).
func (s *digestSender) render(set render.Set, d digest, pref Preferences, items []Notification) ([]byte, error) {
	loc := loadLocation(pref.Timezone)
	m, err := s.cfg.compose(set, d.tenant, d.userID, loc, items)
	if err != nil {
		return nil, err
	}
	unsubURL := s.cfg.unsubscribeURL(d.tenant, d.userID)
	var msg bytes.Buffer
	host := "eventline"
	if u, err := url.Parse(s.cfg.PublicURL); err == nil && u.Hostname() != "" {
		host = u.Hostname()
	}
	unsub := "<" + unsubURL + ">"
	if s.cfg.Mailto != "" {
		unsub += ", <mailto:" + s.cfg.Mailto + "?subject=unsubscribe>"
	}
	mw := multipart.NewWriter(&msg)
	from := s.cfg.From
	if a, err := mail.ParseAddress(from); err == nil {
		from = a.String() // RFC 2047-encodes a non-ASCII name
	}
	headers := []struct{ k, v string }{
		{"From", from},
		{"To", (&mail.Address{Address: pref.Email}).String()},
		{"Subject", mime.QEncoding.Encode("utf-8", m.Subject)},
		{"Date", s.now().In(loc).Format(time.RFC1123Z)},
		{"Message-ID", fmt.Sprintf("<digest-%d@%s>", d.id, host)},
		{"MIME-Version", "1.0"},
		{"Auto-Submitted", "auto-generated"},
		{"List-Unsubscribe", unsub},
		{"List-Unsubscribe-Post", "List-Unsubscribe=One-Click"},
		{"Content-Type", `multipart/alternative; boundary="` + mw.Boundary() + `"`},
	}
	for _, h := range headers {
		fmt.Fprintf(&msg, "%s: %s\r\n", h.k, h.v)
	}
	msg.WriteString("\r\n")
	for _, part := range []struct{ ctype, body string }{{"text/plain; charset=utf-8", m.Text}, {"text/html; charset=utf-8", m.HTML}} {
		pw, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {part.ctype}, "Content-Transfer-Encoding": {"quoted-printable"}})
		if err != nil {
			return nil, err
		}
		qp := quotedprintable.NewWriter(pw)
		if _, err := qp.Write([]byte(strings.ReplaceAll(part.body, "\n", "\r\n"))); err != nil {
			return nil, err
		}
		if err := qp.Close(); err != nil {
			return nil, err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	return msg.Bytes(), nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
