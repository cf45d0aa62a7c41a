package apikey_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := apikey.NewStore(testenv.Pool(t), 0)
	k, key, err := store.Create(ctx, apikey.CreateParams{Tenant: "acme", Scopes: []string{apikey.ScopeIngest}, RateLimit: 50})
	require.NoError(t, err)
	require.Regexp(t, `^el_[a-z0-9]{16}_[A-Za-z0-9_-]{43}$`, key)

	got, err := store.Authenticate(ctx, key)
	require.NoError(t, err)
	require.Equal(t, k.ID, got.ID)
	require.Equal(t, "acme", got.Tenant)
	require.Equal(t, 50, got.RateLimit)
	require.True(t, got.Allows(apikey.ScopeIngest))
	require.False(t, got.Allows(apikey.ScopeRead))
	require.False(t, got.Allows(apikey.ScopeAdmin))

	flip := byte('A')
	if key[len(key)-1] == 'A' {
		flip = 'B'
	}
	wrongSecret := key[:len(key)-1] + string(flip)
	for _, bad := range []string{"", "el_", "el_short_x", key + "x", wrongSecret, strings.Replace(key, "el_", "xx_", 1), "el_" + strings.Repeat("a", 16) + "_" + key[20:]} {
		_, err := store.Authenticate(ctx, bad)
		require.ErrorIs(t, err, apikey.ErrInvalid, "%q", bad)
	}
}

func TestCreateRejects(t *testing.T) {
	t.Parallel()
	store := apikey.NewStore(testenv.Pool(t), 0)
	ctx := context.Background()
	_, _, err := store.Create(ctx, apikey.CreateParams{Tenant: "Acme", Scopes: []string{"ingest"}})
	require.Error(t, err)
	_, _, err = store.Create(ctx, apikey.CreateParams{Tenant: "acme"})
	require.Error(t, err)
	_, _, err = store.Create(ctx, apikey.CreateParams{Tenant: "acme", Scopes: []string{"ingest"}, RateLimit: -1})
	require.Error(t, err)
}

func TestParseScopes(t *testing.T) {
	t.Parallel()
	s, err := apikey.ParseScopes(" ingest, read,ingest ")
	require.NoError(t, err)
	require.Equal(t, []string{"ingest", "read"}, s)
	_, err = apikey.ParseScopes("ingest,write")
	require.ErrorContains(t, err, "write")
	_, err = apikey.ParseScopes(" , ")
	require.Error(t, err)
}
