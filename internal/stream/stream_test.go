package stream_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

func TestEnsureIsIdempotent(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	nc := n.Connect(t)
	ctx := context.Background()
	s, err := stream.Ensure(ctx, nc, stream.Config{})
	require.NoError(t, err)
	cfg := s.CachedInfo().Config
	require.Equal(t, "EVENTS", cfg.Name)
	require.Equal(t, []string{"events.>"}, cfg.Subjects)
	require.Equal(t, jetstream.FileStorage, cfg.Storage)
	require.True(t, cfg.DenyDelete)
	require.True(t, cfg.DenyPurge)
	require.True(t, cfg.AllowAtomicPublish)
	require.Equal(t, 2*time.Minute, cfg.Duplicates)
	require.Equal(t, 1, cfg.Replicas)
	require.Equal(t, jetstream.DiscardNew, cfg.Discard)

	// A second start with another duplicate window updates the stream in place.
	s, err = stream.Ensure(ctx, nc, stream.Config{Duplicates: 5 * time.Minute})
	require.NoError(t, err)
	require.Equal(t, 5*time.Minute, s.CachedInfo().Config.Duplicates)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	names := js.StreamNames(ctx)
	var all []string
	for name := range names.Name() {
		all = append(all, name)
	}
	require.Equal(t, []string{"EVENTS"}, all)
}

// TestEnsureRefusesOldServer runs the machine's Debian nats-server (2.9,
// without atomic batch publish) on a free port.
func TestEnsureRefusesOldServer(t *testing.T) {
	t.Parallel()
	bin := "/usr/sbin/nats-server"
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("this test needs an old nats-server binary at %s: apt-get install nats-server", bin)
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	require.NoError(t, err)
	version := strings.TrimPrefix(strings.TrimSpace(string(out)), "nats-server: v")
	if events.CheckServerVersion(version) == nil {
		t.Fatalf("%s is version %s, not older than 2.12; this test needs an old server", bin, version)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	cmd := exec.Command(bin, "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-js", "-sd", t.TempDir())
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	var nc *nats.Conn
	require.Eventually(t, func() bool {
		nc, err = nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", port))
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
	defer nc.Close()

	_, err = stream.Ensure(context.Background(), nc, stream.Config{})
	require.Error(t, err)
	require.Contains(t, err.Error(), version, "names the version found")
	require.Contains(t, err.Error(), ">= 2.12.0", "names the version needed")
}

// TestEnsureLeavesAnEqualStreamAlone: a start that changes nothing sends
// no update (an update rewrites the store config, which raced with
// consumer creation inside nats-server); the stream's info shows the
// config unchanged and a second server-side "updated" never happens.
func TestEnsureLeavesAnEqualStreamAlone(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	nc := n.Connect(t)
	ctx := context.Background()
	updates := make(chan struct{}, 10)
	sub, err := nc.Subscribe("$JS.EVENT.ADVISORY.STREAM.UPDATED.EVENTS", func(*nats.Msg) { updates <- struct{}{} })
	require.NoError(t, err)
	defer sub.Unsubscribe() //nolint:errcheck
	require.NoError(t, nc.Flush())
	_, err = stream.Ensure(ctx, nc, stream.Config{})
	require.NoError(t, err)
	_, err = stream.Ensure(ctx, nc, stream.Config{}) // equal: no update
	require.NoError(t, err)
	_, err = stream.Ensure(ctx, nc, stream.Config{Duplicates: 3 * time.Minute}) // one update
	require.NoError(t, err)
	<-updates                                                                   // the one update's advisory
	_, err = stream.Ensure(ctx, nc, stream.Config{Duplicates: 3 * time.Minute}) // equal again
	require.NoError(t, err)
	_, err = stream.Ensure(ctx, nc, stream.Config{}) // a second update
	require.NoError(t, err)
	<-updates
	// Advisories arrive in the order of the updates: had an equal Ensure
	// updated, a third would be queued by now behind the second.
	require.NoError(t, nc.Flush())
	require.Empty(t, updates, "only the two changing starts updated the stream")
}
