// Package testenv gives tests real infrastructure: an embedded NATS server
// with JetStream (fsync always, a private store directory, a random port)
// per test, and a fresh, migrated Postgres database per test.
//
// Postgres comes from DATABASE_URL, else localhost:5432, else a throwaway
// cluster started from the local initdb/pg_ctl binaries. With none of these
// a test fails with a message that says how to get one; it is never skipped.
//
// Packages whose tests use Postgres call Main from TestMain so that a
// throwaway cluster is stopped when the tests end:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
package testenv
