package consume_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/consume"
	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

// TestUnmarshalerGivesParseStoredTheMessage: what the Watermill message
// carries is what ParseStored needs - subject, body, stream sequence and
// timestamp, Nats-Msg-Id and traceparent - and a dead letter keeps them.
func TestUnmarshalerGivesParseStoredTheMessage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := testenv.StartNATS(t)
	nc := n.Connect(t)
	str, err := stream.Ensure(ctx, nc, stream.Config{})
	require.NoError(t, err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	const input = `"action":"closed","eventable":{"type":"card","id":"c1"},"creator":{"type":"user","id":"u1"}}`
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tests := []struct {
		name   string
		body   string
		header nats.Header
		id     string // "" for the derived one
		field  string // the rejected field, "" when accepted
	}{
		{"with id and headers", `{"id":"e1",` + input, nats.Header{"Nats-Msg-Id": {"acme:e1"}, "traceparent": {tp}}, "e1", ""},
		{"no id, no headers", `{` + input, nil, "", ""},
		{"foreign Nats-Msg-Id", `{"id":"e2",` + input, nats.Header{"Nats-Msg-Id": {"globex:e2"}}, "", "Nats-Msg-Id"},
		{"Nats-Msg-Id twice", `{"id":"e3",` + input, nats.Header{"Nats-Msg-Id": {"acme:e3", "acme:e3"}}, "", "Nats-Msg-Id"},
		{"unknown field", `{"id":"e4","x":1,` + input, nil, "", "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := nats.NewMsg("events.acme.card.closed")
			m.Data = []byte(tt.body)
			if tt.header != nil {
				m.Header = tt.header
			}
			ack, err := js.PublishMsg(ctx, m)
			require.NoError(t, err)
			stored, err := str.GetMsg(ctx, ack.Sequence)
			require.NoError(t, err)
			cons, err := str.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: ack.Sequence})
			require.NoError(t, err)
			jm, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
			require.NoError(t, err)

			msg, err := consume.Unmarshaler{}.Unmarshal(jm)
			require.NoError(t, err)
			require.Equal(t, ack.Sequence, consume.StreamSeq(msg))
			require.True(t, stored.Time.Equal(consume.StreamTime(msg)), "%v %v", stored.Time, consume.StreamTime(msg))
			e, err := consume.Event(msg)
			letter := consume.Letter("projector", msg, errors.New("x"))
			require.Equal(t, ack.Sequence, letter.StreamSeq)
			require.True(t, stored.Time.Equal(letter.StreamTime))
			require.Equal(t, tt.header.Values("Nats-Msg-Id"), letter.Message().Header.Values(events.HeaderMsgID), "the letter keeps every Nats-Msg-Id")
			require.Nil(t, letter.Errors, "a failure that is not a validation error is no rejection")
			if tt.field != "" {
				var verr *events.ValidationError
				require.ErrorAs(t, err, &verr)
				require.Equal(t, tt.field, verr.Errors[0].Field)
				require.Equal(t, verr.Errors, consume.Letter("projector", msg, err).Errors, "the letter of a rejected message carries its field errors")
				return
			}
			require.NoError(t, err)
			require.Equal(t, stored.Time.UTC().Truncate(time.Microsecond), e.RecordedAt)
			require.Equal(t, ack.Sequence, e.Seq)
			if tt.id == "" {
				tt.id = events.StreamEventID(stored.Time, ack.Sequence)
			}
			require.Equal(t, tt.id, e.ID)
			require.Equal(t, tt.header.Get("traceparent"), e.Traceparent)
		})
	}
}
