// Package render turns events into the sentences people read: "bob
// commented on card *Fix login*", "alice moved *Fix login* to Done". One
// renderer serves every place eventline shows an event to a person — the
// inbox and timeline components, Slack messages, digest emails — so they
// all say the same thing, and a tenant's own templates
// (GET|PUT /v1/sentence-templates) change them everywhere at once
// (docs/browser.md#sentences, docs/architecture.md §13).
package render

import (
	"html"
	"strings"
)

// Part is a run of a sentence's text; Em marks the name of the thing the
// event is about (a card's title), which every format emphasizes.
type Part struct {
	Text string `json:"text"`
	Em   bool   `json:"em,omitempty"`
}

// Sentence is a rendered event, formatted for each place it is shown.
type Sentence []Part

// Plain is the sentence without markup: "bob commented on card Fix login".
func (s Sentence) Plain() string {
	var b strings.Builder
	for _, p := range s {
		b.WriteString(p.Text)
	}
	return b.String()
}

// format writes the parts escaped, the emphasized ones wrapped.
func (s Sentence) format(escape, em func(string) string) string {
	var b strings.Builder
	for _, p := range s {
		t := escape(p.Text)
		if p.Em && t != "" {
			t = em(t)
		}
		b.WriteString(t)
	}
	return b.String()
}

var markdownEscaper = strings.NewReplacer(`\`, `\\`, `*`, `\*`, `_`, `\_`, "`", "\\`", `[`, `\[`)

// Markdown emphasizes with asterisks and escapes Markdown in the text:
// "bob commented on card *Fix login*". The golden test reads this form.
func (s Sentence) Markdown() string {
	return s.format(markdownEscaper.Replace, func(t string) string { return "*" + t + "*" })
}

// slackEscaper escapes what Slack's mrkdwn requires (as Fizzy does), so
// user-controlled text cannot inject links or mentions.
var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// Slack is Slack mrkdwn: &, < and > escaped, the emphasized name bold.
// An asterisk inside a name is replaced by a look-alike (U+2217), since
// mrkdwn has no escape for it.
func (s Sentence) Slack() string {
	return s.format(slackEscaper.Replace, func(t string) string { return "*" + strings.ReplaceAll(t, "*", "∗") + "*" })
}

// HTML is the sentence as escaped HTML with <em> around the name: safe to
// insert as markup whatever the event's particulars hold.
func (s Sentence) HTML() string {
	return s.format(html.EscapeString, func(t string) string { return "<em>" + t + "</em>" })
}

// Rendered is a sentence as the APIs return it.
type Rendered struct {
	Text string `json:"text"`
	HTML string `json:"html"`
}

// Rendered returns the API form.
func (s Sentence) Rendered() Rendered { return Rendered{Text: s.Plain(), HTML: s.HTML()} }
