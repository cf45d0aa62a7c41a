package consume

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	var d Backoff
	for delivered, want := range map[uint64]time.Duration{1: time.Second, 4: 8 * time.Second, 7: time.Minute, 1000: time.Minute} {
		if got := d.WaitTime(delivered); got != want {
			t.Errorf("WaitTime(%d) = %v, want %v", delivered, got, want)
		}
	}
}
