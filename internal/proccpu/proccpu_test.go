package proccpu

import (
	"os"
	"syscall"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	for _, c := range []struct {
		line string
		want time.Duration
	}{
		// utime 1234, stime 56 ticks.
		{"4242 (nats-server) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 56 0 0 20 0 9 0 500 0 0", 1290 * ClockTick},
		// comm with spaces and parentheses: counted from the last ')'.
		{"7 (a) b) c) R 1 7 7 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 1 0 0", 7 * ClockTick},
		{"8 (postgres) S 1 8 8 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0", 0},
	} {
		got, err := parseStat([]byte(c.line))
		if err != nil {
			t.Fatalf("%q: %v", c.line, err)
		}
		if got != c.want {
			t.Errorf("%q: %v, want %v", c.line, got, c.want)
		}
	}
	for _, bad := range []string{"", "1 (x", "1 (x) S 1 2 3", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 12x 4 0"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestOfAgreesWithGetrusage spins until getrusage says 200ms of
// CPU were used (however long that takes on a shared machine) and wants
// /proc/self/stat to say the same within a few clock ticks.
func TestOfAgreesWithGetrusage(t *testing.T) {
	rusage := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	before, err := Of(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	r0 := rusage()
	x := 0
	for deadline := time.Now().Add(30 * time.Second); rusage()-r0 < 200*time.Millisecond; x++ {
		if time.Now().After(deadline) {
			t.Fatal("this process did not get 200 ms of CPU in 30 s: the machine is starved; the check needs some CPU to compare /proc with getrusage")
		}
	}
	r := rusage() - r0
	after, err := Of(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if d := after - before; d < r-3*ClockTick || d > r+3*ClockTick {
		t.Errorf("getrusage says %v, /proc/self/stat %v (x=%d)", r, d, x)
	}
}
