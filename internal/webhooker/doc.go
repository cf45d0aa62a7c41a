// Package webhooker fans events out to the webhook endpoints of their
// tenant as signed Standard Webhooks deliveries, retried on a schedule,
// isolated per endpoint and logged (docs/contract.md §2 "Webhooks", §3;
// docs/webhooks.md for users and operators; docs/architecture.md §8-9,
// §14-18 for the reasons).
//
// It is four packages, and the compiler keeps their boundaries: imports
// go root -> {endpoint, delivery, attempt} and attempt -> {endpoint,
// delivery}; endpoint and delivery import nothing else of the webhooker.
//
//   - endpoint: the Endpoint model and its event-type patterns, the
//     endpoint Store (tenant CRUD under row-level security, secrets sealed
//     at rest, the change feed) and the Registry.
//   - delivery: the Delivery, Attempt, Job and Outcome types and a
//     delivery's Status; the Ledger, which owns the delivery tables and
//     lists the log; the retry schedule (schedule.go); the disable rule
//     (disable.go); the operational events outcomes announce (notice.go).
//     It starts nothing.
//   - attempt: the Dispatcher (with its adaptive limit on attempts in
//     flight, limit.go) and the Attempter, with the HTTP Poster and the
//     Slack body. It opens no database connection: it declares what it
//     consumes (Endpoints, Sink, Observer, RateWindows) and this package
//     provides it.
//   - webhooker (this package): the wiring (service.go, app.go) and the
//     parts that decide when to write — the fan-out, attempt first, the
//     scheduler, the leases, the result writer, the announcer — with the
//     API, the portal, the metrics and the dead-letter replay.
//
// How it runs, part by part (Service.Run wires them):
//
//   - The ledger (delivery/ledger.go) is the only code that writes the
//     delivery tables — webhook.deliveries, webhook.attempts, webhook.due,
//     webhook.claims — and the endpoints' failure trackers
//     (consecutive_failures, failing_since, failing_announced, and the
//     disabling of an endpoint that keeps failing). Every other part
//     decides when to write and calls it: the fan-out records
//     deliveries, the result writer logs outcomes, the scheduler claims
//     due rows, the leases renew claims, the API retries and resends,
//     the Service prunes the log. The ledger returns what committed
//     outcomes announce (disabled endpoints, operational events) as data,
//     and its callers act on them; the rule that disables an endpoint is
//     a pure function (delivery/disable.go).
//   - The Registry (endpoint/registry.go) keeps every endpoint in memory,
//     indexed by tenant, event-type pattern and parent filter, and follows
//     changes in Postgres every 250 ms by transaction horizon (the Store's
//     change feed, one round trip), so an endpoint committed out of
//     sequence order is never skipped.
//   - The fan-out (fanout.go) is a Watermill handler on the durable
//     "webhooker": it matches an event against the registry and records
//     one delivery per endpoint (group-committed inserts, Ledger.Record;
//     an insert made while none commits or waits, every event's at low
//     rates, is committed by its handler: groupcommit.Config.Inline).
//     For an event's first delivery to at most
//     FirstAttemptConfig.MaxEndpoints (1,000) it attempts first and
//     records each delivery with its outcome (firstattempt.go):
//     every attempt reports to one sink, which hands the outcomes the
//     fan-out waits for to its collector, by delivery id, and the others
//     to the result writer. Otherwise it records first, claimed by this
//     replica, and queues the attempts. An event to more than
//     Config.ShareAbove endpoints is cut into chunks of Config.Chunk
//     (webhook.chunks, Ledger.Share), claimed by no one, for every
//     replica to share.
//   - The scheduler (scheduler.go) claims due deliveries from webhook.due
//     (retries, manual retries, replays, first attempts whose claim ended
//     because their replica died) and chunks of shared fan-outs, with FOR
//     UPDATE SKIP LOCKED, never more than its dispatcher has room for. It
//     hands each chunk to the fan-out (fanout.workChunk), which attempts
//     and records it as an event that is not shared; the record deletes
//     the chunk. A pass that finds nothing due, every pass of an idle
//     replica, is one Postgres round trip (ended claims expired, due
//     tenants looked for and chunks claimed in one pipeline); the claiming
//     transaction opens only when something is due.
//   - The leases (lease.go) renew the claim of every delivery this replica
//     holds, from its claim until its outcome is written, every quarter of
//     Config.Claim, and give them back when the replica stops.
//   - The dispatcher (attempt/dispatcher.go) runs attempts on a bounded
//     pool of workers with a queue, a concurrency cap and a rate limit per
//     endpoint; rate limits are budgets per time slot shared by every
//     replica through Postgres (attempt/ratelimit.go, kept in
//     webhook.rate_windows by ratewindows.go).
//   - The attempter (attempt/attempter.go) signs, posts through the
//     SSRF-safe client and classifies the outcome, its retry decided by
//     delivery/schedule.go; the result writer (results.go) hands outcomes
//     to the ledger in batches (a batch of successes is one round trip),
//     which logs them, schedules retries and
//     moves the endpoints' failure trackers, and announces an endpoint the
//     ledger disabled as a webhook.disabled event. The announcer
//     (operational.go) appends the other operational events — failing
//     streaks, exhausted deliveries, recoveries — once their outcomes are
//     committed (docs/webhooks.md "Operational events").
//   - The API (api.go, api_deliveries.go, portal.go) manages endpoints
//     and shows, retries and resends deliveries.
package webhooker
