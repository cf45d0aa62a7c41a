package testenv

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// CounterValue is the value of a Prometheus counter, for tests that read
// a service's metrics in process.
func CounterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatalf("testenv: read counter: %v", err)
	}
	return m.GetCounter().GetValue()
}
