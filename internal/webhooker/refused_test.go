package webhooker

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestResponseBodyPostgresCannotStore: an endpoint answers with a body
// Postgres refuses as text (a NUL byte, invalid UTF-8). The attempt is
// logged all the same, with those bytes replaced, first attempt and
// retry alike; refusing it would fail every outcome recorded with it.
func TestResponseBodyPostgresCannotStore(t *testing.T) {
	t.Parallel()
	b := setup(t, options{allowPrivate: true})
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			w.WriteHeader(http.StatusInternalServerError)
		}
		_, _ = w.Write([]byte("no\x00pe \xff"))
	})
	id, _ := b.createEndpoint(t, map[string]any{"url": rc.URL, "events": []string{"*"}})
	b.publish(t, "e1")
	d := b.waitStatusAttempts(t, id, 1)[0]
	require.Equal(t, 500, d.Attempts[0].StatusCode)
	require.Equal(t, "no\uFFFDpe \uFFFD", d.Attempts[0].Response)
	b.clock.Add(6 * time.Second)
	_, err := b.svc.ScheduleNow(context.Background())
	require.NoError(t, err)
	d = b.waitStatus(t, id, "succeeded", 1)[0]
	require.Len(t, d.Attempts, 2)
	require.Equal(t, "no\uFFFDpe \uFFFD", d.Attempts[1].Response)
}
