package deadletter_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/deadletter"
	"github.com/eventline/eventline/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestAddKeepsWhatPostgresCannotStore: NATS stores a subject with a 0xff or
// NUL byte, a header may hold one, and a field error names a JSON key as
// sent ("a\u0000" decodes to a NUL). The letter is still written (those
// bytes become U+FFFD in its text columns; the body is kept as is): a
// letter Postgres refused was never written, and its message was retried
// forever, holding up the projector.
func TestAddKeepsWhatPostgresCannotStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testenv.Pool(t)
	body := []byte("{\"a\\u0000\":1,\"b\":\"\xff\"}")
	l := deadletter.Letter{Consumer: "projector", StreamSeq: 1, Subject: "events.acme.card.\xff\x00", Data: body,
		MsgID: "acme:\x00\xfe", Error: "event 0: a\x00: is not a field of an event; remove it"}
	require.NoError(t, deadletter.Add(ctx, pool, l))
	got, err := deadletter.NewStore(pool).Get(ctx, "projector", 1)
	require.NoError(t, err)
	require.Equal(t, "events.acme.card.\uFFFD\uFFFD", got.Subject)
	require.Equal(t, "acme:\uFFFD\uFFFD", got.MsgID)
	require.Equal(t, "event 0: a\uFFFD: is not a field of an event; remove it", got.Error)
	require.Equal(t, body, got.Data, "the body is bytes and kept exactly")
}
