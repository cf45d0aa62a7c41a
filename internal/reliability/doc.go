// Package reliability is eventline's fault-injection suite (RELIABILITY.md). Its
// tests run the real ingest, projector and webhooker binaries against real
// nats-server processes and a real Postgres, push events over HTTP with a
// load generator that re-sends on 503 and connection errors as a client
// would, inject one fault under that load (SIGKILL, SIGSTOP, a server down
// for minutes, a cluster node lost, Postgres crashed, network latency,
// resets and blackholes through an embedded toxiproxy, consumers killed in
// a loop, poison messages), and then check every read model: nothing
// acknowledged is missing and nothing is doubled.
//
// The tests are behind the build tag "reliability" so that `go test ./...`
// stays fast; run them with `make reliability` (or one of them with
// `make reliability RUN=TestName`). Each test appends one result row to the
// JSON-lines file named by RELIABILITY_RESULTS; Render turns those rows into
// the table of RELIABILITY.md.
package reliability
