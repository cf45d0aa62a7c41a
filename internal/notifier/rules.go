package notifier

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/eventline/eventline/pkg/events"
)

// Rules are a tenant's notification rules. The first rule whose Event
// pattern matches an event's type applies; an event no rule matches
// notifies nobody.
type Rules struct {
	Rules []Rule `json:"rules"`
}

// Rule says, for one event type pattern, who is notified, who starts
// watching and which object the notification is grouped under.
type Rule struct {
	// Event is "type.action"; either part may be "*" ("card.*", "*.created",
	// "*").
	Event string `json:"event"`
	// Group is the object notifications are aggregated under: "eventable"
	// (the default) or a type name — the eventable when it has that type,
	// else its nearest parent of that type, else the eventable.
	Group string `json:"group,omitempty"`
	// Notify is who gets a notification. The creator never does.
	Notify Audience `json:"notify"`
	// Watch is who starts watching the group object.
	Watch Audience `json:"watch"`
}

// Audience is a set of users derived from an event.
type Audience struct {
	// Creator is the event's creator when it is a user (watch only).
	Creator bool `json:"creator,omitempty"`
	// WatchersOf names objects whose watchers are included: "eventable", or
	// a type name meaning the eventable when it has that type, else its
	// nearest parent of that type (absent: nobody).
	WatchersOf []string `json:"watchers_of,omitempty"`
	// UserIDsIn names particulars fields holding a user id or an array of
	// them, e.g. "assignee_ids", "mentioned_user_ids".
	UserIDsIn []string `json:"user_ids_in,omitempty"`
}

// UserCreator is the creator type that identifies a user: such a creator
// is never notified of their own event and can start watching. Creators of
// type "system" notify nobody.
const UserCreator = "user"

// EventableTarget names the event's eventable in Group and WatchersOf.
const EventableTarget = "eventable"

// Limits of a rule set.
const (
	MaxRules         = 200
	MaxAudienceItems = 16
	MaxRulesBytes    = 256 << 10
)

// DefaultRules reproduce Fizzy's notifications; they apply to every tenant
// that has not set its own.
func DefaultRules() Rules {
	return Rules{Rules: []Rule{
		{ // a new card: the board's watchers and its assignees hear of it
			Event:  "card.published",
			Notify: Audience{WatchersOf: []string{"board"}, UserIDsIn: []string{"assignee_ids"}},
			Watch:  Audience{Creator: true, UserIDsIn: []string{"assignee_ids"}},
		},
		{ // assigning: only the assignees, who start watching the card
			Event:  "card.assigned",
			Notify: Audience{UserIDsIn: []string{"assignee_ids"}},
			Watch:  Audience{UserIDsIn: []string{"assignee_ids"}},
		},
		{ // closing: the card's watchers
			Event:  "card.closed",
			Notify: Audience{WatchersOf: []string{"card"}},
		},
		{ // a comment: the card's watchers and the mentioned users, grouped under the card
			Event:  "comment.created",
			Group:  "card",
			Notify: Audience{WatchersOf: []string{"card"}, UserIDsIn: []string{"mentioned_user_ids"}},
			Watch:  Audience{Creator: true, UserIDsIn: []string{"mentioned_user_ids"}},
		},
		{ // a mention (of a card or in a comment): the mentioned users, under the card
			Event:  "*.mentioned",
			Group:  "card",
			Notify: Audience{UserIDsIn: []string{"mentioned_user_ids"}},
			Watch:  Audience{UserIDsIn: []string{"mentioned_user_ids"}},
		},
	}}
}

var particularsField = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// ParseRules decodes and validates a rule set. A *events.ValidationError
// names every problem: Index is the rule's position (0 for problems with
// the body as a whole) and Field a path inside the rule such as
// "notify.watchers_of[1]".
func ParseRules(data []byte) (Rules, error) {
	verr := &events.ValidationError{}
	if len(data) > MaxRulesBytes {
		verr.Errors = append(verr.Errors, events.FieldError{Field: "rules", Message: fmt.Sprintf("the rule set is larger than %d bytes", MaxRulesBytes)})
		return Rules{}, verr
	}
	// The raw bytes first: encoding/json would rewrite invalid UTF-8 and
	// lone surrogates into U+FFFD before any rule could see them.
	for _, fe := range events.CheckStorable(data, "rules") {
		verr.Errors = append(verr.Errors, ruleFieldError(fe))
	}
	if len(verr.Errors) > 0 {
		return Rules{}, verr
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var rs Rules
	if err := dec.Decode(&rs); err != nil {
		verr.Errors = append(verr.Errors, events.FieldError{Field: jsonErrorField(err), Message: describeJSON(err)})
		return Rules{}, verr
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		verr.Errors = append(verr.Errors, events.FieldError{Field: "rules", Message: "unexpected data after the JSON object"})
		return Rules{}, verr
	}
	if rs.Rules == nil {
		verr.Errors = append(verr.Errors, events.FieldError{Field: "rules", Message: `is required: {"rules": [...]} (an empty list notifies nobody)`})
		return Rules{}, verr
	}
	if len(rs.Rules) > MaxRules {
		verr.Errors = append(verr.Errors, events.FieldError{Field: "rules", Message: fmt.Sprintf("at most %d rules", MaxRules)})
		return Rules{}, verr
	}
	for i, r := range rs.Rules {
		add := func(field, format string, args ...any) {
			verr.Errors = append(verr.Errors, events.FieldError{Index: i, Field: field, Message: fmt.Sprintf(format, args...)})
		}
		if !validPattern(r.Event) {
			add("event", `must be "type.action" where each part is a name (^[a-z][a-z0-9_]{0,62}$) or "*", or "*" alone`)
		}
		if r.Group != "" && r.Group != EventableTarget && !events.IsName(r.Group) {
			add("group", `must be "eventable" or a type name (^[a-z][a-z0-9_]{0,62}$)`)
		}
		if r.Notify.Creator {
			add("notify.creator", "the creator is never notified of their own event; remove it")
		}
		checkAudience("notify", r.Notify, add)
		checkAudience("watch", r.Watch, add)
		if len(r.Notify.WatchersOf)+len(r.Notify.UserIDsIn) == 0 && !r.Watch.any() {
			add("notify", "the rule neither notifies nor starts a watch; give notify or watch a member (an event matching no rule notifies nobody anyway)")
		}
	}
	if len(verr.Errors) > 0 {
		return Rules{}, verr
	}
	return rs, nil
}

// ruleFieldError turns a problem at a path of the body ("rules[3].event")
// into the rule's index and a path inside the rule.
func ruleFieldError(fe events.FieldError) events.FieldError {
	rest, ok := strings.CutPrefix(fe.Field, "rules[")
	if !ok {
		return fe
	}
	n, tail, ok := strings.Cut(rest, "]")
	i, err := strconv.Atoi(n)
	if !ok || err != nil {
		return fe
	}
	fe.Index, fe.Field = i, strings.TrimPrefix(tail, ".")
	if fe.Field == "" {
		fe.Field = "rule"
	}
	return fe
}

func (a Audience) any() bool { return a.Creator || len(a.WatchersOf) > 0 || len(a.UserIDsIn) > 0 }

func checkAudience(prefix string, a Audience, add func(field, format string, args ...any)) {
	if len(a.WatchersOf) > MaxAudienceItems {
		add(prefix+".watchers_of", "at most %d entries", MaxAudienceItems)
	}
	if len(a.UserIDsIn) > MaxAudienceItems {
		add(prefix+".user_ids_in", "at most %d entries", MaxAudienceItems)
	}
	for j, w := range a.WatchersOf {
		if w != EventableTarget && !events.IsName(w) {
			add(fmt.Sprintf("%s.watchers_of[%d]", prefix, j), `must be "eventable" or a type name (^[a-z][a-z0-9_]{0,62}$)`)
		} else if slices.Index(a.WatchersOf, w) < j {
			add(fmt.Sprintf("%s.watchers_of[%d]", prefix, j), "%q is listed twice", w)
		}
	}
	for j, f := range a.UserIDsIn {
		if !particularsField.MatchString(f) {
			add(fmt.Sprintf("%s.user_ids_in[%d]", prefix, j), "must be a particulars field name (^[A-Za-z_][A-Za-z0-9_]{0,63}$)")
		} else if slices.Index(a.UserIDsIn, f) < j {
			add(fmt.Sprintf("%s.user_ids_in[%d]", prefix, j), "%q is listed twice", f)
		}
	}
}

func validPattern(p string) bool {
	if p == "*" {
		return true
	}
	typ, act, ok := strings.Cut(p, ".")
	if !ok {
		return false
	}
	return (typ == "*" || events.IsName(typ)) && (act == "*" || events.IsName(act))
}

// Match returns the first rule whose pattern matches eventType
// ("card.closed"), or false.
func (rs Rules) Match(eventType string) (Rule, bool) {
	typ, act, _ := strings.Cut(eventType, ".")
	for _, r := range rs.Rules {
		if r.Event == "*" {
			return r, true
		}
		pt, pa, _ := strings.Cut(r.Event, ".")
		if (pt == "*" || pt == typ) && (pa == "*" || pa == act) {
			return r, true
		}
	}
	return Rule{}, false
}

func jsonErrorField(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return te.Field
	}
	return "rules"
}

func describeJSON(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return fmt.Sprintf("must be a JSON %s, not %s", jsonKind(te.Type.Kind().String()), te.Value)
	case errors.As(err, &se):
		return fmt.Sprintf("the body is not valid JSON (at byte %d): %s", se.Offset, se.Error())
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return strings.TrimPrefix(err.Error(), "json: ") + `; a rule has event, group, notify and watch; an audience has creator, watchers_of and user_ids_in`
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return `the body is empty or cut short; send {"rules": [...]}`
	}
	return "the body is not valid: " + err.Error()
}

func jsonKind(k string) string {
	switch k {
	case "slice":
		return "array"
	case "struct", "map":
		return "object"
	case "bool":
		return "boolean"
	}
	return k
}

// target resolves a Group or WatchersOf name against an event.
func target(e *events.Event, name string) (events.Ref, bool) {
	if name == "" || name == EventableTarget || e.Eventable.Type == name {
		return e.Eventable, true
	}
	for _, p := range e.Parents {
		if p.Type == name {
			return p, true
		}
	}
	return events.Ref{}, false
}

// group is the object an event's notifications are grouped under.
func (r Rule) group(e *events.Event) events.Ref {
	if g, ok := target(e, r.Group); ok {
		return g
	}
	return e.Eventable
}

// objects lists the objects whose watchers the rule reads for e.
func (a Audience) objects(e *events.Event) []events.Ref {
	var out []events.Ref
	for _, w := range a.WatchersOf {
		if ref, ok := target(e, w); ok && !slices.Contains(out, ref) {
			out = append(out, ref)
		}
	}
	return out
}

// particularUsers returns the user ids held by the named particulars
// fields: a string, or an array whose string members count. Other values
// are ignored.
func particularUsers(particulars json.RawMessage, fields []string) []string {
	if len(fields) == 0 || len(particulars) == 0 {
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(particulars, &m); err != nil {
		return nil
	}
	var out []string
	for _, f := range fields {
		raw, ok := m[f]
		if !ok {
			continue
		}
		var one string
		if json.Unmarshal(raw, &one) == nil {
			out = appendUser(out, one)
			continue
		}
		var many []any
		if json.Unmarshal(raw, &many) == nil {
			for _, v := range many {
				if s, ok := v.(string); ok {
					out = appendUser(out, s)
				}
			}
		}
	}
	return out
}

func appendUser(out []string, id string) []string {
	if id == "" || len(id) > events.MaxRefIDLen || slices.Contains(out, id) {
		return out
	}
	return append(out, id)
}

// watchers answers who watches an object.
type watchers interface {
	watchersOf(ref events.Ref) []string
}

// Outcome is what a rule decides for one event.
type Outcome struct {
	Group      events.Ref
	Recipients []string // users notified, never the creator
	Watchers   []string // users who start watching Group
}

// Resolve applies rule r to e, reading current watchers from w.
func (r Rule) Resolve(e *events.Event, w watchers) Outcome {
	out := Outcome{Group: r.group(e)}
	creatorUser := ""
	if e.Creator.Type == UserCreator {
		creatorUser = e.Creator.ID
	}
	if r.Watch.Creator && creatorUser != "" {
		out.Watchers = appendUser(out.Watchers, creatorUser)
	}
	for _, ref := range r.Watch.objects(e) {
		for _, u := range w.watchersOf(ref) {
			out.Watchers = appendUser(out.Watchers, u)
		}
	}
	for _, u := range particularUsers(e.Particulars, r.Watch.UserIDsIn) {
		out.Watchers = appendUser(out.Watchers, u)
	}
	if e.Creator.Type == events.SystemCreator {
		return out // system actions notify nobody
	}
	for _, ref := range r.Notify.objects(e) {
		for _, u := range w.watchersOf(ref) {
			if u != creatorUser {
				out.Recipients = appendUser(out.Recipients, u)
			}
		}
	}
	for _, u := range particularUsers(e.Particulars, r.Notify.UserIDsIn) {
		if u != creatorUser {
			out.Recipients = appendUser(out.Recipients, u)
		}
	}
	return out
}
