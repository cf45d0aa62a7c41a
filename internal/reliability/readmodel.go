package reliability

import "context"

// ReadModel is one place acknowledged events must reach exactly once: a
// consumer's tables, or what a webhook receiver got. The suite checks every
// read model of a system after each fault and while it recovers.
//
// To add a consumer (the notifier's unread counts, say), implement Check
// over its tables or API and append it to the system's models: Lost counts
// acknowledged events the model does not reflect, Duplicated those it
// reflects more than once (an unread count bumped twice for one event).
// Check is called repeatedly while the system recovers, so it must be
// read-only and cheap enough to run every second on 100,000 events; it must
// be safe for concurrent use.
type ReadModel interface {
	// Name labels the model in the results ("timeline", "webhook.deliveries").
	Name() string
	// Check tallies the model against the acknowledged event ids. The
	// returned tally's Model field is filled in by the caller.
	Check(ctx context.Context, acked []string) (ModelTally, error)
}
