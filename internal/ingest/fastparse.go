package ingest

import (
	"time"

	"github.com/eventline/eventline/pkg/events"
)

// parseFast decodes and normalizes a body that is entirely valid, or
// reports false so the strict parser can name the problems. Whatever it
// accepts, encoding/json accepts as valid JSON and the strict parser
// accepts with the same events (FuzzParseFastAgreesWithStrict).
//
// It reads the body once: the batch's frame ({"events": [ ... ]}, nothing
// else) by hand, each event with events.Scanner, whose storable scan is at
// once the syntax check encoding/json would make and the storability
// check of docs/architecture.md §2, and which decodes the fields of the
// event it has proven valid (ParseStored reads stream messages with the
// same scanner).
func parseFast(body []byte, tenant string, now time.Time) ([]events.Event, bool) {
	n := min(MaxEventsPerRequest, 1+len(body)/256)
	s := events.NewScanner(body, n)
	// `{"events": [`, the key exactly so and whitespace anywhere JSON
	// allows it.
	batch := s.Byte('{') && s.Literal(`"events"`) && s.Byte(':') && s.Byte('[')
	if !batch {
		s.Rewind()
	}
	es := make([]events.Event, 0, n)
	for {
		if len(es) == MaxEventsPerRequest {
			return nil, false
		}
		e, ok := s.Event(tenant)
		if !ok {
			return nil, false
		}
		es = append(es, e)
		if !batch {
			break
		}
		if s.Byte(',') {
			continue
		}
		if s.Byte(']') && s.Byte('}') {
			break
		}
		return nil, false
	}
	if !s.End() {
		return nil, false // anything after the body's one value
	}
	seen := make(map[string]struct{}, len(es))
	for i := range es {
		e := &es[i]
		if e.NormalizeStorable(now) != nil {
			return nil, false
		}
		if _, dup := seen[e.ID]; dup {
			return nil, false
		}
		seen[e.ID] = struct{}{}
	}
	return es, true
}
