package render

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/eventline/eventline/pkg/events"
)

// Template limits.
const (
	MaxTemplateLen = 500
	MaxTemplates   = 200
	maxAlternates  = 8
)

// A Template is a sentence with placeholders, parsed from text such as
//
//	{creator} moved *{title|eventable.id}* to {to_column|column}
//
// Text between asterisks is emphasized (\* is a literal asterisk, \{ a
// literal brace). A placeholder {a|b|'text'} takes the first of its
// alternatives that the event has:
//
//   - creator: particulars.creator_name, else the creator's id
//     ("eventline" for a system creator)
//   - action, type, eventable.type, eventable.id, creator.id
//   - parent.<type>: the id of the event's nearest parent of that type
//   - 'text': that text
//   - any other name: that particular (a string, a number, true/false, or
//     a list of them read as "a, b and c")
//
// A template whose placeholder has none of its alternatives does not
// apply: the next one does (the tenant's, then the built-in one for the
// type, then the generic sentence, which always applies).
type Template struct {
	src   string
	nodes []node
}

type node struct {
	text string   // literal text, when alts is nil
	alts []string // placeholder alternatives
	em   bool
}

// Source is the template's text.
func (t Template) Source() string { return t.src }

// Parse reads a template, or says what is wrong with it.
func Parse(src string) (Template, error) {
	if len(src) > MaxTemplateLen {
		return Template{}, fmt.Errorf("is longer than %d bytes", MaxTemplateLen)
	}
	if strings.TrimSpace(src) == "" {
		return Template{}, fmt.Errorf("is empty")
	}
	t := Template{src: src}
	var lit strings.Builder
	em := false
	flush := func() {
		if lit.Len() > 0 {
			t.nodes = append(t.nodes, node{text: lit.String(), em: em})
			lit.Reset()
		}
	}
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch c {
		case '\\':
			if i+1 < len(src) && strings.IndexByte(`\*{}`, src[i+1]) >= 0 {
				lit.WriteByte(src[i+1])
				i++
				continue
			}
			lit.WriteByte(c)
		case '*':
			flush()
			em = !em
		case '{':
			end := strings.IndexByte(src[i:], '}')
			if end < 0 {
				return Template{}, fmt.Errorf("has a { without its } at byte %d", i)
			}
			alts := strings.Split(src[i+1:i+end], "|")
			if len(alts) > maxAlternates {
				return Template{}, fmt.Errorf("placeholder at byte %d has more than %d alternatives", i, maxAlternates)
			}
			for _, a := range alts {
				if !validAlt(a) {
					return Template{}, fmt.Errorf("placeholder {%s} at byte %d: %q is not a field name (creator, action, eventable.id, parent.<type>, a particular) or a 'quoted text'", src[i+1:i+end], i, a)
				}
			}
			flush()
			t.nodes = append(t.nodes, node{alts: alts, em: em})
			i += end
		case '}':
			return Template{}, fmt.Errorf("has a } without its { at byte %d (write \\} for a brace)", i)
		default:
			lit.WriteByte(c)
		}
	}
	if em {
		return Template{}, fmt.Errorf("has an * that is not closed (write \\* for an asterisk)")
	}
	flush()
	return t, nil
}

func validAlt(a string) bool {
	if len(a) >= 2 && a[0] == '\'' && a[len(a)-1] == '\'' {
		return !strings.ContainsAny(a[1:len(a)-1], "'{}")
	}
	if a == "" || len(a) > 64 {
		return false
	}
	return strings.IndexFunc(a, func(r rune) bool { return !isFieldChar(r) }) < 0
}

func isFieldChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-'
}

// Execute renders e, or reports false when a placeholder has none of its
// alternatives.
func (t Template) Execute(e *Fields) (Sentence, bool) {
	var out Sentence
	for _, n := range t.nodes {
		text := n.text
		if n.alts != nil {
			v, ok := "", false
			for _, a := range n.alts {
				if v, ok = e.lookup(a); ok {
					break
				}
			}
			if !ok {
				return nil, false
			}
			text = v
		}
		if k := len(out); k > 0 && out[k-1].Em == n.em {
			out[k-1].Text += text
		} else {
			out = append(out, Part{Text: text, Em: n.em})
		}
	}
	return out, true
}

// Fields is an event prepared for rendering: its particulars decoded once.
type Fields struct {
	e           events.Event
	particulars map[string]any
}

// FieldsOf prepares e.
func FieldsOf(e events.Event) *Fields {
	f := &Fields{e: e}
	if len(e.Particulars) > 0 {
		_ = json.Unmarshal(e.Particulars, &f.particulars) // not an object: no particulars
	}
	return f
}

// maxValue bounds one placeholder's text.
const maxValue = 200

func (f *Fields) lookup(name string) (string, bool) {
	if len(name) >= 2 && name[0] == '\'' {
		return name[1 : len(name)-1], true
	}
	e := f.e
	switch name {
	case "creator":
		if v, ok := f.particular("creator_name"); ok {
			return v, true
		}
		if e.Creator.Type == events.SystemCreator {
			return "eventline", true
		}
		return e.Creator.ID, e.Creator.ID != ""
	case "creator.id":
		return e.Creator.ID, e.Creator.ID != ""
	case "action":
		return strings.ReplaceAll(e.Action, "_", " "), e.Action != ""
	case "type":
		return e.Type, e.Type != ""
	case "eventable.type":
		return strings.ReplaceAll(e.Eventable.Type, "_", " "), e.Eventable.Type != ""
	case "eventable.id":
		return e.Eventable.ID, e.Eventable.ID != ""
	}
	if typ, ok := strings.CutPrefix(name, "parent."); ok {
		for _, p := range e.Parents {
			if p.Type == typ {
				return p.ID, true
			}
		}
		return "", false
	}
	return f.particular(name)
}

// particular reads a top-level particular as text.
func (f *Fields) particular(name string) (string, bool) {
	v, ok := f.particulars[name]
	if !ok {
		return "", false
	}
	s, ok := scalar(v)
	if !ok {
		list, isList := v.([]any)
		if !isList || len(list) == 0 {
			return "", false
		}
		var items []string
		for _, x := range list {
			if s, ok := scalar(x); ok {
				items = append(items, s)
			}
		}
		if len(items) == 0 {
			return "", false
		}
		s = joinList(items)
	}
	s = strings.TrimSpace(s)
	if r := []rune(s); len(r) > maxValue {
		s = string(r[:maxValue-1]) + "…"
	}
	return s, s != ""
}

func scalar(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return strings.Join(strings.Fields(x), " "), true // no line breaks inside a sentence
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

// joinList reads ["a", "b", "c"] as "a, b and c".
func joinList(items []string) string {
	if len(items) == 1 {
		return items[0]
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}
