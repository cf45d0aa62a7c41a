package events

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits of what eventline's PostgreSQL read models can store (text, jsonb
// and numeric columns, database encoding UTF8). They were found by
// experiment against PostgreSQL 15 and are checked against a real server by
// FuzzAcceptedIsStorable.
const (
	// MaxDepth is how deeply a JSON document may nest objects and arrays:
	// an event is level 1, its particulars level 2, so particulars may
	// nest 62 levels more. PostgreSQL's jsonb parser gives up at about
	// 20,000 levels with the default 2 MB max_stack_depth (less with a
	// smaller stack); 64 stays far below it and above any real payload.
	MaxDepth = 64
	// MaxNumberExponent is the largest decimal exponent of a JSON number's
	// leading digit: numeric's weight is an int16 in base-10,000 digits,
	// so 9.99e131071 is stored and 1e131072 overflows.
	MaxNumberExponent = 131071
	// MaxNumberScale is the most digits a JSON number may have after the
	// decimal point once its exponent is applied (numeric's display scale,
	// 14 bits): 1e-16383 and 0.5e-16382 are stored, 1e-16384, 1.0e-16383
	// and 0e-16384 overflow, even though some of them are zero.
	MaxNumberScale = 16383
	// maxExponentMagnitude: PostgreSQL refuses any exponent whose
	// magnitude reaches INT_MAX/2 before it looks at the digits, so
	// 0e1073741823 overflows while 0e1073741822 is zero.
	maxExponentMagnitude = 1<<30 - 1
	// maxStorableProblems bounds how many problems one document reports.
	maxStorableProblems = 10
)

// CheckStorable reports what in the JSON document doc eventline's
// PostgreSQL read models cannot store, reading the raw bytes (before
// encoding/json would silently replace invalid UTF-8 and lone surrogates
// with U+FFFD):
//
//   - bytes that are not valid UTF-8, in any string or object key;
//   - the escape \u0000 (text and jsonb cannot hold NUL);
//   - UTF-16 surrogate escapes that are not a high surrogate (\ud800-\udbff)
//     followed at once by a low one (\udc00-\udfff);
//   - numbers numeric cannot hold: leading digit above 10^MaxNumberExponent,
//     more than MaxNumberScale digits after the decimal point once the
//     exponent is applied, or an exponent of magnitude 2^30-1 or more;
//   - objects and arrays nested deeper than MaxDepth levels.
//
// Each problem is a FieldError (Index 0) whose Field is the JSON path of
// the value from the root of doc, such as "particulars.items[3].n", or
// root when the root value itself is at fault. At most 10 problems are
// reported; nesting deeper than MaxDepth ends the scan. CheckStorable does
// not report JSON syntax errors: a document must be decoded too. It makes
// one pass and allocates only when it finds a problem.
func CheckStorable(doc []byte, root string) []FieldError {
	s := storableScan{b: doc, maxDepth: MaxDepth, root: root}
	s.document()
	return s.errs
}

// StorableValue scans the JSON value at the start of data (after any
// whitespace) as CheckStorable scans a document, the value at level 1 as
// an event is. n is where the value ends, what follows it is left to the
// caller; ok reports that the value is valid JSON, exactly as
// encoding/json's syntax allows, and that CheckStorable finds nothing in
// it. It allocates nothing when ok. Ingest reads a batch's events with it,
// so the one pass over each event's bytes is both the syntax check and
// the storability check (docs/architecture.md §2).
func StorableValue(data []byte) (n int, ok bool) {
	s := storableScan{b: data, maxDepth: MaxDepth, root: "event"}
	s.ws()
	ok = s.value()
	return s.i, ok && len(s.errs) == 0 && !s.stop
}

// storableScan is one pass over a JSON document: it validates the syntax
// as encoding/json does and collects storable problems with their paths.
type storableScan struct {
	b        []byte
	i        int
	depth    int
	maxDepth int
	root     string // name of the root value in errors
	prefix   string // path of the root value, "" at the top
	index    int    // FieldError.Index
	stop     bool   // too many problems or too deep: stop reporting
	errs     []FieldError
	path     [MaxDepth]pathFrame
}

// pathFrame is one level of the path: the key being read in an object
// (raw bytes between the quotes), or the index in an array.
type pathFrame struct {
	array            bool
	keyStart, keyEnd int
	index            int
}

// document scans the whole input and reports whether it is one valid JSON
// value with nothing but whitespace around it.
func (s *storableScan) document() bool {
	s.ws()
	if !s.value() {
		return false
	}
	s.ws()
	return s.i == len(s.b)
}

func (s *storableScan) ws() { s.i = skipWS(s.b, s.i) }

// skipWS returns the index of the first byte at or after i in b that is
// not JSON whitespace (len(b) if none).
func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// value scans one value at s.i; false means a syntax error (the scan ends).
func (s *storableScan) value() bool {
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '{' || c == '[':
		return s.container(c == '[')
	case c == '"':
		return s.str(false)
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	}
	return false
}

func (s *storableScan) literal(lit string) bool {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

// container scans an object or an array.
func (s *storableScan) container(array bool) bool {
	if s.depth == s.maxDepth {
		s.problem(false, "nests deeper than %d levels of objects and arrays; flatten it", MaxDepth)
		s.stop = true
		return false // nothing after it is looked at
	}
	f := &s.path[s.depth]
	*f = pathFrame{array: array, keyStart: -1}
	s.depth++
	s.i++
	s.ws()
	end := byte('}')
	if array {
		end = ']'
	}
	if s.i < len(s.b) && s.b[s.i] == end {
		s.i++
		s.depth--
		return true
	}
	for {
		if !array {
			if s.i >= len(s.b) || s.b[s.i] != '"' {
				return false
			}
			f.keyStart = s.i + 1
			if !s.str(true) {
				return false
			}
			s.ws()
			if s.i >= len(s.b) || s.b[s.i] != ':' {
				return false
			}
			s.i++
			s.ws()
		}
		if !s.value() {
			return false
		}
		s.ws()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
			s.ws()
			f.index++
		case end:
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

// plain marks the bytes a string may hold without a closer look.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str scans a string at s.i (a key when key is set: its end is recorded in
// the current path frame). A problem is reported once per string.
func (s *storableScan) str(key bool) bool {
	s.i++
	bad := false // one problem per string is enough
	for {
		for s.i < len(s.b) && plain[s.b[s.i]] {
			s.i++
		}
		if s.i >= len(s.b) {
			return false
		}
		switch c := s.b[s.i]; {
		case c == '"':
			if key {
				s.path[s.depth-1].keyEnd = s.i
			}
			s.i++
			return true
		case c == '\\':
			if s.i+1 >= len(s.b) {
				return false
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
				continue
			case 'u':
			default:
				return false
			}
			r, ok := hex4(s.b, s.i+2)
			if !ok {
				return false
			}
			switch {
			case bad:
			case r == 0:
				bad = true
				s.problem(key, "must not contain the NUL character (\\u0000), which the read models cannot store")
			case r >= 0xDC00 && r <= 0xDFFF:
				bad = true
				s.problem(key, "has a UTF-16 low surrogate escape (\\u%04x) without a high surrogate before it; send the character as UTF-8 or as a surrogate pair", r)
			case r >= 0xD800 && r <= 0xDBFF:
				if lo, ok := hex4(s.b, s.i+8); ok && s.b[s.i+6] == '\\' && s.b[s.i+7] == 'u' && lo >= 0xDC00 && lo <= 0xDFFF {
					s.i += 6 // the pair is one character
				} else {
					bad = true
					s.problem(key, "has a UTF-16 high surrogate escape (\\u%04x) without a low surrogate after it; send the character as UTF-8 or as a surrogate pair", r)
				}
			}
			s.i += 6
		case c < 0x20:
			return false // a raw control character: a syntax error
		default:
			r, size := utf8.DecodeRune(s.b[s.i:])
			if r == utf8.RuneError && size == 1 && !bad {
				bad = true
				s.problem(key, "is not valid UTF-8 (byte 0x%02x); send text as UTF-8", c)
			}
			s.i += size
		}
	}
}

// hex4 reads four hex digits at b[i:]; it reports false when they are not.
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// number scans a number and checks that PostgreSQL's numeric input
// accepts it (set_var_from_str and make_result of numeric.c).
func (s *storableScan) number() bool {
	b, i := s.b, s.i
	if b[i] == '-' {
		i++
	}
	var intDigits, fracDigits, leadingZeros int
	nonzero := false
	digit := func(c byte) {
		if c != '0' {
			nonzero = true
		} else if !nonzero {
			leadingZeros++
		}
	}
	switch {
	case i < len(b) && b[i] == '0':
		digit('0')
		intDigits, i = 1, i+1
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			digit(b[i])
			intDigits++
			i++
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			digit(b[i])
			fracDigits++
			i++
		}
		if fracDigits == 0 {
			return false
		}
	}
	exp := 0
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		neg := false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			neg = b[i] == '-'
			i++
		}
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			if exp < maxExponentMagnitude {
				exp = exp*10 + int(b[i]-'0')
			}
			i++
		}
		if i == start {
			return false
		}
		exp = min(exp, maxExponentMagnitude)
		if neg {
			exp = -exp
		}
	}
	s.i = i
	scale := max(0, fracDigits-exp)
	switch {
	case exp >= maxExponentMagnitude || exp <= -maxExponentMagnitude:
		s.problem(false, "is a number whose exponent PostgreSQL cannot store; use an exponent of magnitude below %d", maxExponentMagnitude)
	case scale > MaxNumberScale:
		s.problem(false, "is a number with %d digits after the decimal point; the read models store at most %d (PostgreSQL numeric)", scale, MaxNumberScale)
	case nonzero && intDigits-1-leadingZeros+exp > MaxNumberExponent:
		s.problem(false, "is a number of 1e%d or more; the read models store numbers below 1e%d (PostgreSQL numeric)", MaxNumberExponent+1, MaxNumberExponent+1)
	}
	return true
}

// problem records a problem with the value being scanned (or, when key is
// set, with the key being read in the current object).
func (s *storableScan) problem(key bool, format string, args ...any) {
	if s.stop {
		return
	}
	if len(s.errs) == maxStorableProblems-1 {
		s.stop = true
	}
	msg := fmt.Sprintf(format, args...)
	if key {
		msg = "key " + msg
	}
	s.errs = append(s.errs, FieldError{Index: s.index, Field: s.pathString(key), Message: msg})
}

// pathString renders the path of the current value, such as
// "particulars.items[3].n". For a key problem the last key is read up to
// s.i (its end is not recorded yet).
func (s *storableScan) pathString(key bool) string {
	var b strings.Builder
	b.WriteString(s.prefix)
	for d := 0; d < s.depth; d++ {
		f := s.path[d]
		if f.array {
			b.WriteString("[" + strconv.Itoa(f.index) + "]")
			continue
		}
		end, bad := f.keyEnd, key && d == s.depth-1
		if bad {
			end = s.keyEndFrom(f.keyStart)
		}
		if f.keyStart < 0 || end < f.keyStart {
			continue
		}
		writeKey(&b, s.b[f.keyStart:end], bad)
	}
	if b.Len() == 0 {
		return s.root
	}
	return b.String()
}

// keyEndFrom finds the closing quote of the key starting at start.
func (s *storableScan) keyEndFrom(start int) int {
	for i := start; i < len(s.b); i++ {
		switch s.b[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return len(s.b)
}

// writeKey appends ".key" for a plain key and `["k e y"]` for any other
// (Go-quoted, so the path itself is always valid UTF-8). A key with
// escapes is decoded first, unless the key itself is at fault: that one is
// shown as written (`["a\u0000"]`), or Go-quoted when it is not UTF-8.
func writeKey(b *strings.Builder, raw []byte, bad bool) {
	k := string(raw)
	if bad {
		if utf8.ValidString(k) {
			b.WriteString(`["` + k + `"]`)
		} else {
			b.WriteString("[" + strconv.Quote(k) + "]")
		}
		return
	}
	if strings.IndexByte(k, '\\') >= 0 {
		var dec string
		if json.Unmarshal([]byte(`"`+k+`"`), &dec) == nil {
			k = dec
		}
	}
	if isPlainKey(k) {
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(k)
		return
	}
	b.WriteString("[" + strconv.Quote(k) + "]")
}

func isPlainKey(k string) bool {
	if k == "" || !utf8.ValidString(k) {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		letter := c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// checkStorableAt checks a document nested inside an event: paths start
// with prefix, and depth counts from the level the document sits at
// (particulars: level 2). It also reports whether doc is valid JSON.
func checkStorableAt(doc []byte, index int, prefix string, level int) (valid bool, errs []FieldError) {
	s := storableScan{b: doc, maxDepth: MaxDepth - (level - 1), root: prefix, prefix: prefix, index: index}
	valid = s.document()
	return valid, s.errs
}
