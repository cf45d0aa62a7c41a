package delivery

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestNoticeEventIDsAreDerived: the same streak or the same exhausted
// attempt always makes the same event id, a valid one; different ones
// differ.
func TestNoticeEventIDsAreDerived(t *testing.T) {
	t.Parallel()
	since := time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)
	const ep = "0195f7a2-0000-7000-8000-000000000001"
	notices := []Notice{
		{Type: TypeAttemptFailing, Tenant: "acme", EndpointID: ep, Since: since, Failures: 3, LastErrorClass: "timeout"},
		{Type: TypeAttemptFailing, Tenant: "acme", EndpointID: ep, Since: since.Add(time.Microsecond), Failures: 3},
		{Type: TypeRecovered, Tenant: "acme", EndpointID: ep, Since: since},
		{Type: TypeAttemptExhausted, Tenant: "acme", EndpointID: ep, DeliveryID: "d1", EventID: "e1", EventType: "card.closed", Attempts: 8, LastErrorClass: "status"},
		{Type: TypeAttemptExhausted, Tenant: "acme", EndpointID: ep, DeliveryID: "d1", EventID: "e1", EventType: "card.closed", Attempts: 9, LastErrorClass: "status"},
	}
	seen := map[string]bool{}
	for _, n := range notices {
		again := n
		again.Failures, again.LastErrorClass = 99, "other" // what it says does not name it
		require.Equal(t, n.ID(), again.ID())
		require.False(t, seen[n.ID()], "%s is not unique", n.ID())
		seen[n.ID()] = true
		e, err := n.Event()
		require.NoError(t, err)
		require.NoError(t, e.Normalize(time.Now()), "%s", n.ID())
		require.Equal(t, n.Type, e.Type)
	}
}
