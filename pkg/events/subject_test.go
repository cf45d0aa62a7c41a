package events_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/pkg/events"
)

func TestSubject(t *testing.T) {
	t.Parallel()
	s, err := events.Subject("acme", "card", "closed")
	require.NoError(t, err)
	require.Equal(t, "events.acme.card.closed", s)

	for _, bad := range [][3]string{
		{"ac.me", "card", "closed"}, {"acme", "ca*rd", "closed"}, {"acme", "card", ">"},
		{"acme", "card", "clo sed"}, {"", "card", "closed"}, {"acme", "", "closed"},
		{"acme", "card", ""}, {"acme\t", "card", "closed"}, {"acme", "card", "closed\n"},
	} {
		_, err := events.Subject(bad[0], bad[1], bad[2])
		require.Error(t, err, "%q", bad)
	}
}

func TestMsgIDIsPerTenant(t *testing.T) {
	t.Parallel()
	require.NotEqual(t, events.MsgID("a", "x"), events.MsgID("b", "x"))
	require.Equal(t, "acme:e1", events.MsgID("acme", "e1"))
}

func TestCheckServerVersion(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"2.12.0", "2.12.3", "2.15.2", "3.0.0", "2.13.0-beta.1", "v2.12.0"} {
		require.NoError(t, events.CheckServerVersion(ok), ok)
	}
	for _, old := range []string{"2.9.25", "2.11.9", "1.99.0", "2.10.0"} {
		err := events.CheckServerVersion(old)
		require.Error(t, err, old)
		require.Contains(t, err.Error(), old)
		require.Contains(t, err.Error(), "2.12.0")
	}
	require.Error(t, events.CheckServerVersion(""))
	require.Error(t, events.CheckServerVersion("garbage"))
}

// FuzzSubject checks that no input ever yields a subject with an empty
// token, a wildcard or whitespace.
func FuzzSubject(f *testing.F) {
	f.Add("acme", "card", "closed")
	f.Add("a.b", "*", ">")
	f.Add("", " ", "\t")
	f.Fuzz(func(t *testing.T, tenant, typ, action string) {
		s, err := events.Subject(tenant, typ, action)
		if err != nil {
			return
		}
		tokens := strings.Split(s, ".")
		if len(tokens) != 4 || tokens[0] != "events" {
			t.Fatalf("subject %q does not have 4 tokens", s)
		}
		for _, tok := range tokens {
			if tok == "" || strings.ContainsAny(tok, "*> \t\r\n\x00") {
				t.Fatalf("subject %q has a bad token %q", s, tok)
			}
		}
	})
}
