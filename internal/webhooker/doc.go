// Package webhooker fans events out to the webhook endpoints of their
// tenant as signed Standard Webhooks deliveries, retried on a schedule,
// isolated per endpoint and logged (docs/contract.md §2 "Webhooks", §3;
// docs/webhooks.md for users and operators; docs/architecture.md §8-9,
// §14-16 for the reasons).
//
// How it runs, part by part (Service.Run wires them):
//
//   - The ledger (ledger.go) is the only code that writes the delivery
//     tables — webhook.deliveries, webhook.attempts, webhook.due,
//     webhook.claims — and the endpoints' failure trackers
//     (consecutive_failures, failing_since, failing_announced, and the
//     disabling of an endpoint that keeps failing). Every other part
//     decides when to write and calls it: the fan-out records
//     deliveries, the result writer logs outcomes, the scheduler claims
//     due rows, the leases renew claims, the API retries and resends,
//     the Service prunes the log. The ledger returns what committed outcomes announce
//     (disabled endpoints, operational events) as data, and its callers
//     act on them; the rule that disables an endpoint is a pure function
//     (disable.go).
//   - Registry (registry.go) keeps every endpoint in memory, indexed by
//     tenant, event-type pattern and parent filter, and follows changes in
//     Postgres every 250 ms by transaction horizon (Store.changedSince), so
//     an endpoint committed out of sequence order is never skipped.
//   - The fan-out (fanout.go) is a Watermill handler on the durable
//     "webhooker": it matches an event against the registry and records
//     one delivery per endpoint (group-committed inserts, ledger.record).
//     For an event's first delivery to at most 100 endpoints it attempts
//     first and records each delivery with its outcome (firstattempt.go);
//     otherwise it records first, claimed by this replica, and queues the
//     attempts. An event to more than
//     Config.ShareAbove endpoints is recorded due and claimed by no one,
//     for every replica to share.
//   - The scheduler (scheduler.go) claims due deliveries from webhook.due
//     (retries, manual retries, replays, shared fan-outs, first attempts
//     whose claim ended because their replica died) with FOR UPDATE SKIP
//     LOCKED, never more than its dispatcher has room for.
//   - The leases (lease.go) renew the claim of every delivery this replica
//     holds, from its claim until its outcome is written, every quarter of
//     Config.Claim, and give them back when the replica stops.
//   - The dispatcher (dispatcher.go) runs attempts on a bounded pool of
//     workers with a queue, a concurrency cap and a rate limit per
//     endpoint; rate limits are budgets per time slot shared by every
//     replica through Postgres (ratelimit.go).
//   - The attempter (deliver.go) signs, posts through the SSRF-safe client
//     and classifies the outcome, its retry decided by schedule.go; the
//     result writer (results.go) hands outcomes to the ledger in batches,
//     which logs them, schedules retries and moves the endpoints' failure
//     trackers, and announces an endpoint the ledger disabled as a
//     webhook.disabled event. The announcer (operational.go) appends the
//     other operational events — failing streaks, exhausted deliveries,
//     recoveries — once their outcomes are committed (docs/webhooks.md
//     "Operational events").
//   - The API (api.go, delivery_log.go, portal.go) manages endpoints and
//     shows, retries and resends deliveries.
package webhooker
