package events_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/docs/schema"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

// TestSchemaAgreesWithDecode: docs/schema/event-input.schema.json and
// Decode accept and refuse the same events - every validation table case
// of this package and every entry of its committed fuzz corpora - except
// where a case touches a rule JSON Schema cannot express (schema.Rule,
// named in the schema's $comment); those are listed, not skipped silently.
// Every event Decode accepts, as a consumer reads it back from the stream,
// matches event.schema.json.
func TestSchemaAgreesWithDecode(t *testing.T) {
	t.Parallel()
	s, err := schema.Compile()
	require.NoError(t, err)
	cases := map[string][]byte{}
	for _, c := range rejectCases {
		cases["reject/"+c.name] = []byte(c.body)
	}
	for _, c := range acceptCases {
		cases["accept/"+c.name] = []byte(c.body)
	}
	corpus := testenv.FuzzCorpus(t, "testdata/fuzz")
	require.NotEmpty(t, corpus)
	for name, body := range corpus {
		cases["corpus/"+name] = body
	}
	checked := testenv.SchemaAgreement(t, s.Input, cases, func(body []byte) error {
		e, err := events.DecodeForTenant(body, 0, "acme", now)
		if err != nil {
			return err
		}
		// What Decode accepts, as a consumer reads it, is a stored event.
		require.NoError(t, e.Normalize(now))
		stored, err := storedEvent(e)
		require.NoError(t, err)
		require.NoError(t, schema.Validate(s.Event, stored), "stored form %s", stored)
		return nil
	}, now, "acme")
	require.Greater(t, checked, 100, "the cases are compared, not excluded")
}

// storedEvent is e as a consumer reads it back from the stream, in the
// stored form reads and deliveries carry.
func storedEvent(e events.Event) ([]byte, error) {
	body, err := e.MarshalInput()
	if err != nil {
		return nil, err
	}
	subject, err := events.Subject(e.Tenant, e.Eventable.Type, e.Action)
	if err != nil {
		return nil, err
	}
	got, err := events.ParseStored(events.Message{Subject: subject, Data: body, Seq: 42, Timestamp: now})
	if err != nil {
		return nil, err
	}
	return got.MarshalJSON()
}

// TestEventSchemaRefuses: the stored schema requires what eventline
// always sets.
func TestEventSchemaRefuses(t *testing.T) {
	t.Parallel()
	s, err := schema.Compile()
	require.NoError(t, err)
	e, err := events.Decode([]byte(valid), 0, now)
	require.NoError(t, err)
	require.NoError(t, e.Normalize(now))
	good, err := storedEvent(e)
	require.NoError(t, err)
	require.NoError(t, schema.Validate(s.Event, good))
	input, err := e.MarshalInput()
	require.NoError(t, err)
	require.Error(t, schema.Validate(s.Event, input), "the input form lacks recorded_at, type and seq")
	e.Seq = 0
	noSeq, err := e.MarshalJSON()
	require.NoError(t, err)
	require.Error(t, schema.Validate(s.Event, noSeq))
}
