package endpoint

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/secretbox"
	"github.com/eventline/eventline/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// testKeyring seals webhook secrets with a fresh random key.
func testKeyring(t testing.TB) *secretbox.Keyring {
	t.Helper()
	key, err := secretbox.GenerateKey()
	require.NoError(t, err)
	kr, err := secretbox.NewKeyring(key)
	require.NoError(t, err)
	return kr
}
