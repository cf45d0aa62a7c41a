package dev_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/testenv"
)

// TestDevNATSProducer: in eventline dev a producer connects to NATS with an
// API key as its token (the auth callout), publishes exactly the HTTP body,
// and the event reaches the timeline; it cannot publish as another tenant
// or read the stream.
func TestDevNATSProducer(t *testing.T) {
	ctx := context.Background()
	p := startDev(t, t.TempDir(), testenv.Database(t))
	defer p.stop(t)

	violations := make(chan error, 8)
	nc, err := nats.Connect(p.natsURL, nats.Token(p.key), nats.CustomInboxPrefix("_INBOX.dev"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err }))
	require.NoError(t, err, "a producer connects with its API key")
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	msg := nats.NewMsg("events.dev.card.published")
	msg.Header.Set("Nats-Msg-Id", "dev:over-nats-1")
	msg.Data = []byte(`{"id":"over-nats-1","action":"published","eventable":{"type":"card","id":"n1"},` +
		`"creator":{"type":"user","id":"ana"},"parents":[{"type":"board","id":"nats-board"}],"particulars":{"title":"From NATS"}}`)
	ack, err := js.PublishMsg(ctx, msg)
	require.NoError(t, err)
	require.NotZero(t, ack.Sequence)

	testenv.Poll(t, 20*time.Second, "the event published over NATS is in the timeline", func() bool {
		code, body := p.do(t, "GET", "/v1/timelines/board/nats-board", "")
		return code == 200 && strings.Contains(string(body), `"id":"over-nats-1"`)
	})

	require.NoError(t, nc.Publish("events.other.card.published", []byte(`{}`)))
	select {
	case err := <-violations:
		require.True(t, errors.Is(err, nats.ErrPermissionViolation), "%v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("publishing as another tenant was not refused")
	}
	_, err = nc.SubscribeSync("events.>")
	require.NoError(t, err) // refused asynchronously
	select {
	case err := <-violations:
		require.True(t, errors.Is(err, nats.ErrPermissionViolation), "%v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("subscribing to events.> was not refused")
	}

	_, err = nats.Connect(p.natsURL, nats.Token("el_notakeyatallxxxx_secret"))
	require.ErrorIs(t, err, nats.ErrAuthorization, "an unknown key is refused")
}
