package notifier

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/internal/testenv"
)

// TestAppRouterAnswersProblems: the notifier binary's routers answer what
// they have no route for (an unknown path, a wrong method) as
// application/problem+json, 405 with an Allow header, on the API and on
// the admin address.
func TestAppRouterAnswersProblems(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := testenv.StartNATS(t)
	dbURL := testenv.Database(t)
	nc := n.Connect(t) // the admin provisions, as eventline migrate does
	_, err := stream.Ensure(ctx, nc, stream.Config{})
	require.NoError(t, err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = EnsureConsumer(ctx, js, DefaultConsumer, 50, 0)
	require.NoError(t, err)
	app := NewApp(AppConfig{HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", NATS: n.Client(natsauth.Notifier), DatabaseURL: dbURL,
		ShutdownTimeout: 10 * time.Second}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- app.Run(runCtx) }()
	select {
	case <-app.Started():
	case err := <-done:
		t.Fatalf("notifier did not start: %v", err)
	}
	defer func() {
		stop()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Fatal("notifier did not stop")
		}
	}()

	api := "http://" + app.Addr().String()
	testenv.RequireProblem(t, http.MethodGet, api+"/v1/no-such-thing", http.StatusNotFound, "")
	testenv.RequireProblem(t, http.MethodPost, api+"/v1/notification-rules", http.StatusMethodNotAllowed, "GET, PUT, DELETE")
	testenv.RequireProblem(t, http.MethodDelete, api+"/v1/users/u1/preferences", http.StatusMethodNotAllowed, "GET, PUT")
	testenv.RequireProblem(t, http.MethodGet, api+"/components/no-such-file.js", http.StatusNotFound, "")
	admin := "http://" + app.AdminAddr().String()
	testenv.RequireProblem(t, http.MethodGet, admin+"/no-such-thing", http.StatusNotFound, "")
	testenv.RequireProblem(t, http.MethodPut, admin+"/readyz", http.StatusMethodNotAllowed, "GET")
}
