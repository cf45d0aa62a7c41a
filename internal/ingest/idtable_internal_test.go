package ingest

import (
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestMustLookUp: only ids ingest could not have minted just now are
// looked up; a fresh UUIDv7 is covered by the stream's window.
func TestMustLookUp(t *testing.T) {
	now := time.Now()
	fresh, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	v4 := uuid.New()
	cases := map[string]bool{
		"close-c42-1":   true,
		v4.String():     true,
		fresh.String():  false,
		"":              true,
		"0190a000-0000": true,
	}
	for id, want := range cases {
		if got := mustLookUp(id, now); got != want {
			t.Errorf("mustLookUp(%q) = %v, want %v", id, got, want)
		}
	}
	if !mustLookUp(fresh.String(), now.Add(2*time.Minute)) {
		t.Error("a UUIDv7 minted two minutes before must be looked up")
	}
	if !mustLookUp(fresh.String(), now.Add(-time.Hour)) {
		t.Error("a UUIDv7 from the future (a client's clock) must be looked up")
	}
}
