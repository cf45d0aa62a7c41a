package stream_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/internal/testenv"
)

// TestReadSince reads one tenant's messages stored since a time, over
// several direct-get batches, as the webhooker's identity (which may not
// create a consumer): in order, only that tenant's, none before since; a
// reader that stops early gets nothing more.
func TestReadSince(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := testenv.StartNATS(t)
	admin := n.Connect(t)
	_, err := stream.Ensure(ctx, admin, stream.Config{})
	require.NoError(t, err)
	js, err := jetstream.New(admin)
	require.NoError(t, err)
	publish := func(prefix string, count int) []uint64 {
		var seqs []uint64
		for i := range count {
			tenant := []string{"a", "b"}[i%2]
			ack, err := js.Publish(ctx, fmt.Sprintf("events.%s.card.%s%d", tenant, prefix, i), []byte(prefix))
			require.NoError(t, err)
			if tenant == "a" {
				seqs = append(seqs, ack.Sequence)
			}
		}
		return seqs
	}
	publish("old", 10)
	// Every old message was acknowledged, so stored, before this.
	since := time.Now()
	want := publish("new", 2600) // 1,300 of tenant a: three batches

	wnc := n.ConnectAs(t, natsauth.Webhooker)
	var got []uint64
	require.NoError(t, stream.ReadSince(ctx, wnc, "events.a.>", since, 0, func(m stream.StoredMsg) bool {
		require.Regexp(t, `^events\.a\.card\.new\d+$`, m.Subject)
		require.Equal(t, "new", string(m.Data))
		require.False(t, m.Time.Before(since), "stored at %s, before %s", m.Time, since)
		got = append(got, m.Seq)
		return true
	}))
	require.Len(t, got, len(want))
	require.Equal(t, want, got)

	var some []uint64
	require.NoError(t, stream.ReadSince(ctx, wnc, "events.a.>", since, 0, func(m stream.StoredMsg) bool {
		some = append(some, m.Seq)
		return len(some) < 700 // stops inside the second batch
	}))
	require.Equal(t, want[:700], some)

	require.NoError(t, stream.ReadSince(ctx, wnc, "events.nobody.>", since, 0, func(stream.StoredMsg) bool {
		t.Fatal("no message matches")
		return false
	}))
}
