package events

import (
	"fmt"
	"strconv"
	"strings"
)

// MinServerVersion is the oldest NATS server eventline runs against: 2.12
// brought atomic batch publish, which group commit needs.
const MinServerVersion = "2.12.0"

// CheckServerVersion returns an error naming the version found and the
// version needed when version (as reported by the server, e.g. "2.9.25")
// is older than MinServerVersion.
func CheckServerVersion(version string) error {
	got, ok := parseVersion(version)
	want, _ := parseVersion(MinServerVersion)
	if !ok {
		return fmt.Errorf("NATS server reports version %q, which is not a version eventline understands; NATS server >= %s is required", version, MinServerVersion)
	}
	for i := range want {
		if got[i] != want[i] {
			if got[i] < want[i] {
				return fmt.Errorf("NATS server %s is too old: eventline needs NATS server >= %s (atomic batch publish); upgrade the server", version, MinServerVersion)
			}
			return nil
		}
	}
	return nil
}

func parseVersion(v string) ([3]int, bool) {
	var out [3]int
	v = strings.TrimPrefix(v, "v")
	if i := strings.IndexAny(v, "-+"); i >= 0 {
		v = v[:i]
	}
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return out, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return out, false
		}
		out[i] = n
	}
	return out, true
}
