package endpoint

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMatchPattern(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pattern, typ string
		want         bool
	}{
		{"*", "card.closed", true}, {"card.closed", "card.closed", true}, {"card.*", "card.closed", true},
		{"*.closed", "card.closed", true}, {"card.*", "comment.created", false}, {"*.closed", "card.opened", false},
		{"card.closed", "card.closed_x", false}, {"card", "card.closed", false},
	} {
		require.Equal(t, tc.want, matchPattern(tc.pattern, tc.typ), "%s vs %s", tc.pattern, tc.typ)
	}
	for _, p := range []string{"*", "card.*", "*.closed", "card.closed", "*.*"} {
		require.True(t, ValidPattern(p), p)
	}
	for _, p := range []string{"", "card", "Card.closed", "card.closed.x", "card.", ".closed", "c*rd.closed"} {
		require.False(t, ValidPattern(p), p)
	}
}
