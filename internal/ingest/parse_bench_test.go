package ingest

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eventline/eventline/pkg/events"
)

// CPUTime is the user+system CPU time the process has used: per operation
// it is steadier than ns/op on a machine other work competes for.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// parseBenchEvent is a typical event: two parents and a few particulars.
const parseBenchEvent = `{"id":"ev-%d","action":"closed","eventable":{"type":"card","id":"c42"},"creator":{"type":"user","id":"u7"},` +
	`"parents":[{"type":"board","id":"b1"},{"type":"account","id":"a1"}],` +
	`"particulars":{"title":"Fix the login page","column":"Done","points":3,"labels":["bug","ui"],"estimate":1.5e1,"assignee":{"id":"u8","name":"Zoë"}},` +
	`"occurred_at":"2026-11-25T09:59:00.123Z"}`

func parseBenchBody(n int) []byte {
	if n == 1 {
		return []byte(fmt.Sprintf(parseBenchEvent, 0))
	}
	evs := make([]string, n)
	for i := range evs {
		evs[i] = fmt.Sprintf(parseBenchEvent, i)
	}
	return []byte(`{"events":[` + strings.Join(evs, ",") + `]}`)
}

// BenchmarkParseBody is the CPU of turning a request body into normalized
// events (the fast path), per request.
func BenchmarkParseBody(b *testing.B) { benchParse(b, parseBody) }

// BenchmarkParseBodyStrict is the strict parser on the same bodies: what a
// body the fast path defers costs.
func BenchmarkParseBodyStrict(b *testing.B) { benchParse(b, parseBodySlow) }

func benchParse(b *testing.B, parse func([]byte, string, time.Time) ([]events.Event, []events.FieldError)) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for _, n := range []int{1, 100} {
		body := parseBenchBody(n)
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			cpu0 := CPUTime()
			for b.Loop() {
				if _, errs := parse(body, "acme", now); len(errs) > 0 {
					b.Fatal(errs)
				}
			}
			b.ReportMetric(float64(CPUTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}
