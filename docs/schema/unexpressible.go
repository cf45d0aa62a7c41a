package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/eventline/eventline/pkg/events"
)

// Rule is a rule of pkg/events that JSON Schema cannot express; the
// schemas' $comment lists them. Where a document touches one, the schema
// and pkg/events may rightly disagree about it.
type Rule string

// The rules JSON Schema cannot express, and why.
const (
	// RawUTF8: a JSON parser replaces invalid UTF-8 with U+FFFD before a
	// validator sees the text.
	RawUTF8 Rule = "raw bytes must be valid UTF-8"
	// SurrogateEscape: a lone surrogate escape also becomes U+FFFD.
	SurrogateEscape Rule = "no unpaired UTF-16 surrogate escape"
	// NumericRange: numbers reach a validator as numbers; their
	// PostgreSQL numeric weight and scale are not a schema keyword.
	NumericRange Rule = "numbers must fit PostgreSQL numeric"
	// Depth: no keyword limits nesting.
	Depth Rule = "objects and arrays nest at most 64 levels"
	// ParticularsBytes: no keyword measures the size of a value as sent.
	ParticularsBytes Rule = "particulars at most 64 KiB as sent"
	// RefIDBytes: maxLength counts characters, the rule counts bytes.
	RefIDBytes Rule = "reference ids at most 256 bytes of UTF-8"
	// FutureSkew depends on the time the event is received.
	FutureSkew Rule = "occurred_at at most 24 h after it is received"
	// EpochInstant: the pattern checks the year, the rule the instant.
	EpochInstant Rule = "occurred_at not before 1970-01-01T00:00:00Z as an instant"
	// TenantContext depends on the API key or the subject.
	TenantContext Rule = "tenant equal to the API key's or the subject's"
	// UniqueIDs: uniqueItems compares whole events, not their ids.
	UniqueIDs Rule = "ids unique within a request"
	// BodySize: no keyword measures a document's size.
	BodySize Rule = "a request body at most 1 MiB"
)

// maxBody is ingest's request body limit.
const maxBody = 1 << 20

// Unexpressible returns the rules of that list that doc touches: doc is
// one event or a request body ({"events": [...]}), received at now for the
// context tenant (API key or subject).
func Unexpressible(doc []byte, now time.Time, tenant string) []Rule {
	var rules []Rule
	add := func(r Rule) {
		for _, have := range rules {
			if have == r {
				return
			}
		}
		rules = append(rules, r)
	}
	if !utf8.Valid(doc) {
		add(RawUTF8)
	}
	if hasUnpairedSurrogate(doc) {
		add(SurrogateEscape)
	}
	if len(doc) > maxBody {
		add(BodySize)
	}
	evs, batch := split(doc)
	ids := map[string]bool{}
	for _, ev := range evs {
		depth, numbersOK := scanTokens(ev)
		if depth > events.MaxDepth {
			add(Depth)
		}
		if !numbersOK {
			add(NumericRange)
		}
		var e struct {
			ID          *string         `json:"id"`
			Tenant      *string         `json:"tenant"`
			Eventable   json.RawMessage `json:"eventable"`
			Creator     json.RawMessage `json:"creator"`
			Parents     json.RawMessage `json:"parents"`
			Particulars json.RawMessage `json:"particulars"`
			OccurredAt  *string         `json:"occurred_at"`
		}
		if json.Unmarshal(ev, &e) != nil {
			continue
		}
		if len(e.Particulars) > events.MaxParticulars {
			add(ParticularsBytes)
		}
		refs := []json.RawMessage{e.Eventable, e.Creator}
		var parents []json.RawMessage
		if json.Unmarshal(e.Parents, &parents) == nil {
			refs = append(refs, parents...)
		}
		for _, raw := range refs {
			var r struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(raw, &r) == nil && len(r.ID) > events.MaxRefIDLen && utf8.RuneCountInString(r.ID) <= events.MaxRefIDLen {
				add(RefIDBytes)
			}
		}
		if e.Tenant != nil && events.IsTenant(*e.Tenant) && *e.Tenant != tenant {
			add(TenantContext)
		}
		if e.OccurredAt != nil {
			if t, ok := events.ParseTimestamp(*e.OccurredAt); ok && t.After(now.Add(events.MaxFutureSkew)) {
				add(FutureSkew)
			}
			s := *e.OccurredAt
			if (strings.HasPrefix(s, "1969-12-31") || strings.HasPrefix(s, "1970-01-01")) && !strings.HasSuffix(s, "Z") &&
				!strings.HasSuffix(s, "+00:00") && !strings.HasSuffix(s, "-00:00") {
				add(EpochInstant)
			}
		}
		if batch && e.ID != nil && *e.ID != "" {
			if ids[*e.ID] {
				add(UniqueIDs)
			}
			ids[*e.ID] = true
		}
	}
	return rules
}

// split returns the events of a request body, and whether it is a batch.
func split(doc []byte) ([]json.RawMessage, bool) {
	var root map[string]json.RawMessage
	if json.Unmarshal(doc, &root) != nil {
		return nil, false
	}
	list, ok := root["events"]
	if !ok || len(root) != 1 {
		return []json.RawMessage{doc}, false
	}
	var evs []json.RawMessage
	if json.Unmarshal(list, &evs) != nil {
		return nil, true
	}
	return evs, true
}

// scanTokens returns how deeply doc nests and whether every number in it
// fits PostgreSQL numeric.
func scanTokens(doc []byte) (depth int, numbersOK bool) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	numbersOK = true
	level := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) || err != nil {
			return depth, numbersOK
		}
		switch tok := tok.(type) {
		case json.Delim:
			if tok == '{' || tok == '[' {
				level++
				depth = max(depth, level)
			} else {
				level--
			}
		case json.Number:
			numbersOK = numbersOK && fitsNumeric(string(tok))
		}
	}
}

// fitsNumeric applies the limits of PostgreSQL numeric input to a JSON
// number: leading digit below 10^131072, at most 16383 digits after the
// decimal point once the exponent is applied, exponent magnitude below
// 1073741823.
func fitsNumeric(n string) bool {
	n = strings.TrimPrefix(n, "-")
	mant, exp := n, int64(0)
	if i := strings.IndexAny(n, "eE"); i >= 0 {
		mant = n[:i]
		var err error
		exp, err = strconv.ParseInt(strings.TrimPrefix(n[i+1:], "+"), 10, 64)
		if err != nil || exp >= 1073741823 || exp <= -1073741823 {
			return false
		}
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	if int64(len(frac))-exp > 16383 {
		return false
	}
	digits := strings.TrimLeft(intPart+frac, "0")
	if digits == "" {
		return true // zero
	}
	leading := int64(len(intPart)) - 1 - int64(len(intPart+frac)-len(digits)) + exp
	return leading <= 131071
}

// hasUnpairedSurrogate reports whether doc has a \uD800-\uDBFF escape not
// followed by a \uDC00-\uDFFF one, or a low one without a high before it.
func hasUnpairedSurrogate(doc []byte) bool {
	hex := func(i int) (int, bool) {
		if i+6 > len(doc) || doc[i] != '\\' || doc[i+1] != 'u' {
			return 0, false
		}
		v, err := strconv.ParseUint(string(doc[i+2:i+6]), 16, 16)
		return int(v), err == nil
	}
	for i := 0; i < len(doc); i++ {
		if doc[i] != '\\' {
			continue
		}
		v, ok := hex(i)
		if !ok {
			i++ // an escape of one character, such as \\ or \"
			continue
		}
		switch {
		case v >= 0xD800 && v <= 0xDBFF:
			if lo, ok := hex(i + 6); ok && lo >= 0xDC00 && lo <= 0xDFFF {
				i += 11
				continue
			}
			return true
		case v >= 0xDC00 && v <= 0xDFFF:
			return true
		}
		i += 5
	}
	return false
}
