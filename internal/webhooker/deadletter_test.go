package webhooker

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/deadletter"
	"github.com/eventline/eventline/pkg/events"
)

// TestReplayDeadLetterFansOutAgain: a dead-lettered event replayed goes
// to the endpoints that match it now, once, through the scheduler; a
// letter that still cannot be decoded stays poison.
func TestReplayDeadLetterFansOutAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, options{allowPrivate: true})
	ev := b.publish(t, "e-lost")
	require.Eventually(t, func() bool { // fanned out (to no endpoint) and acked
		c, err := b.js.Consumer(ctx, events.StreamName, DefaultConsumer)
		require.NoError(t, err)
		ci, err := c.Info(ctx)
		require.NoError(t, err)
		return ci.NumPending == 0 && ci.NumAckPending == 0 && ci.AckFloor.Stream >= ev.Seq
	}, 10*time.Second, 5*time.Millisecond)
	rc := newReceiver(t, nil)
	id, _ := b.createEndpoint(t, map[string]any{"url": rc.URL, "events": []string{"card.*"}})

	str, err := b.js.Stream(ctx, events.StreamName)
	require.NoError(t, err)
	m, err := str.GetMsg(ctx, ev.Seq)
	require.NoError(t, err)
	letter := deadletter.Letter{Consumer: DefaultConsumer, StreamSeq: ev.Seq, Subject: m.Subject, Data: m.Data,
		StreamTime: m.Time, MsgID: m.Header.Get("Nats-Msg-Id"), Error: "Postgres was down"}
	require.NoError(t, deadletter.Add(ctx, b.pool, letter))
	for range 2 {
		poison, err := ReplayDeadLetter(ctx, b.pool, letter)
		require.NoError(t, err)
		require.NoError(t, poison)
	}
	got, err := deadletter.NewStore(b.pool).Get(ctx, DefaultConsumer, ev.Seq)
	require.NoError(t, err)
	require.NotNil(t, got.ReplayedAt)

	b.clock.Add(time.Minute) // past the replay's claim
	n, err := b.svc.ScheduleNow(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n, "one delivery, however often replayed")
	b.waitStatus(t, id, "succeeded", 1)
	require.Len(t, rc.all(), 1)
	require.Equal(t, "e-lost", rc.all()[0].header.Get("webhook-id"))

	bad := deadletter.Letter{Consumer: DefaultConsumer, StreamSeq: ev.Seq + 1000, Subject: m.Subject, Data: []byte("{"), Error: "decode"}
	poison, err := ReplayDeadLetter(ctx, b.pool, bad)
	require.NoError(t, err)
	require.Error(t, poison, "still undecodable")
}

// TestRejectedMessageRecorded: a message on a tenant's subject that fails
// validation is dead-lettered by the fan-out, which records it as the
// tenant's rejection with the field errors it was rejected with; the
// events behind it are fanned out.
func TestRejectedMessageRecorded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, options{})
	msg := nats.NewMsg("events.acme.card.closed")
	msg.Data = []byte(`{"id":"no-creator","action":"closed","eventable":{"type":"card","id":"c1"}}`)
	msg.Header.Set(events.HeaderMsgID, "acme:no-creator")
	ack, err := b.js.PublishMsg(ctx, msg)
	require.NoError(t, err)
	after := b.publish(t, "after")
	b.waitFannedOut(t, after.Seq)

	l, err := deadletter.NewStore(b.pool).Get(ctx, DefaultConsumer, ack.Sequence)
	require.NoError(t, err)
	require.Contains(t, l.Error, "creator.type: is required")
	rs, err := deadletter.ListRejections(ctx, b.pool, deadletter.RejectionQuery{Tenant: "acme", Limit: 10})
	require.NoError(t, err)
	require.Len(t, rs, 1)
	require.Equal(t, ack.Sequence, rs[0].Seq)
	require.Equal(t, "no-creator", *rs[0].ID)
	require.Equal(t, []events.FieldError{{Field: "creator.type", Message: "is required"}, {Field: "creator.id", Message: "is required"}}, rs[0].Errors)
}
