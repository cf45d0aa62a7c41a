package secretbox_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/secretbox"
)

func newKey(t testing.TB) string {
	t.Helper()
	k, err := secretbox.GenerateKey()
	require.NoError(t, err)
	return k
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	kr, err := secretbox.NewKeyring(newKey(t))
	require.NoError(t, err)
	for _, plain := range [][]byte{nil, []byte("x"), []byte(`[{"secret":"whsec_abc"}]`), bytes.Repeat([]byte{7}, 10_000)} {
		sealed, err := kr.Seal(plain, []byte("acme/ep1"))
		require.NoError(t, err)
		// Only plaintexts long enough not to turn up in random bytes by
		// chance (one byte does, in about one seal of six).
		require.False(t, len(plain) >= 8 && bytes.Contains(sealed, plain), "plaintext visible in the sealed value")
		got, err := kr.Open(sealed, []byte("acme/ep1"))
		require.NoError(t, err)
		require.Equal(t, string(plain), string(got))
		id, err := secretbox.KeyID(sealed)
		require.NoError(t, err)
		require.Equal(t, kr.PrimaryID(), id)
	}
	a, _ := kr.Seal([]byte("same"), nil)
	b, _ := kr.Seal([]byte("same"), nil)
	require.NotEqual(t, a, b, "every seal uses a fresh nonce")
}

func TestWrongKey(t *testing.T) {
	t.Parallel()
	k1, k2 := newKey(t), newKey(t)
	kr1, err := secretbox.NewKeyring(k1)
	require.NoError(t, err)
	kr2, err := secretbox.NewKeyring(k2)
	require.NoError(t, err)
	sealed, err := kr1.Seal([]byte("secret"), []byte("aad"))
	require.NoError(t, err)
	_, err = kr2.Open(sealed, []byte("aad"))
	require.ErrorIs(t, err, secretbox.ErrUnknownKey)

	// A different key relabelled with the right id still does not open.
	forged, err := kr2.Seal([]byte("secret"), []byte("aad"))
	require.NoError(t, err)
	copy(forged[1:9], sealed[1:9])
	_, err = kr1.Open(forged, []byte("aad"))
	require.ErrorIs(t, err, secretbox.ErrOpen)
}

func TestTampering(t *testing.T) {
	t.Parallel()
	kr, err := secretbox.NewKeyring(newKey(t))
	require.NoError(t, err)
	sealed, err := kr.Seal([]byte("whsec_secret"), []byte("aad"))
	require.NoError(t, err)
	for i := range sealed {
		bad := bytes.Clone(sealed)
		bad[i] ^= 0x01
		_, err := kr.Open(bad, []byte("aad"))
		require.Error(t, err, "byte %d flipped", i)
	}
	for n := range sealed {
		_, err := kr.Open(sealed[:n], []byte("aad"))
		require.Error(t, err, "truncated to %d bytes", n)
	}
	_, err = kr.Open(append(bytes.Clone(sealed), 0), []byte("aad"))
	require.Error(t, err, "extended")
}

func TestAADSwap(t *testing.T) {
	t.Parallel()
	kr, err := secretbox.NewKeyring(newKey(t))
	require.NoError(t, err)
	a, err := kr.Seal([]byte("secret of a"), []byte("acme\x00ep-a"))
	require.NoError(t, err)
	_, err = kr.Open(a, []byte("acme\x00ep-b"))
	require.ErrorIs(t, err, secretbox.ErrOpen, "a value moved to another row must not open")
	_, err = kr.Open(a, []byte("other\x00ep-a"))
	require.ErrorIs(t, err, secretbox.ErrOpen)
	_, err = kr.Open(a, nil)
	require.ErrorIs(t, err, secretbox.ErrOpen)
}

func TestRotation(t *testing.T) {
	t.Parallel()
	oldKey, newKeyS := newKey(t), newKey(t)
	before, err := secretbox.NewKeyring(oldKey)
	require.NoError(t, err)
	sealedOld, err := before.Seal([]byte("v1"), []byte("row"))
	require.NoError(t, err)

	after, err := secretbox.NewKeyring(newKeyS, oldKey)
	require.NoError(t, err)
	require.NotEqual(t, before.PrimaryID(), after.PrimaryID())
	got, err := after.Open(sealedOld, []byte("row"))
	require.NoError(t, err, "old keys still open")
	require.Equal(t, "v1", string(got))
	sealedNew, err := after.Seal(got, []byte("row"))
	require.NoError(t, err)
	id, _ := secretbox.KeyID(sealedNew)
	require.Equal(t, after.PrimaryID(), id, "sealing uses the primary key")
	_, err = before.Open(sealedNew, []byte("row"))
	require.ErrorIs(t, err, secretbox.ErrUnknownKey)

	// The same key has the same id in every keyring (ids are derived).
	again, err := secretbox.NewKeyring(oldKey)
	require.NoError(t, err)
	require.Equal(t, before.PrimaryID(), again.PrimaryID())
}

func TestBadKeys(t *testing.T) {
	t.Parallel()
	good := newKey(t)
	for _, tc := range []struct{ name, key string }{
		{"empty", ""},
		{"not base64", "not a key!"},
		{"16 bytes", "AAAAAAAAAAAAAAAAAAAAAA=="},
		{"33 bytes", strings.Repeat("A", 44)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := secretbox.NewKeyring(tc.key)
			require.Error(t, err)
			_, err = secretbox.NewKeyring(good, tc.key)
			require.ErrorContains(t, err, "old secret key 1")
		})
	}
	// URL alphabet without padding is accepted.
	_, err := secretbox.NewKeyring(strings.TrimRight(strings.NewReplacer("+", "-", "/", "_").Replace(good), "="))
	require.NoError(t, err)
	// Errors never echo the key.
	_, err = secretbox.NewKeyring(good[:20])
	require.NotContains(t, err.Error(), good[:20])
}

func TestNotSealed(t *testing.T) {
	t.Parallel()
	kr, err := secretbox.NewKeyring(newKey(t))
	require.NoError(t, err)
	for _, b := range [][]byte{nil, {}, {1}, []byte(`[{"secret":"whsec_x"}]`), append([]byte{1}, "zzzzzzzz"...)} {
		_, err := kr.Open(b, nil)
		require.ErrorIs(t, err, secretbox.ErrFormat, "%q", b)
	}
}

// FuzzOpen: Open never panics and never opens bytes it did not seal.
func FuzzOpen(f *testing.F) {
	kr, err := secretbox.NewKeyring(newKey(f))
	require.NoError(f, err)
	sealed, err := kr.Seal([]byte("whsec_x"), []byte("aad"))
	require.NoError(f, err)
	f.Add(sealed)
	f.Add([]byte{})
	f.Add([]byte{1, '0', '0', '0', '0', '0', '0', '0', '0'})
	f.Fuzz(func(t *testing.T, b []byte) {
		plain, err := kr.Open(b, []byte("aad"))
		if err == nil && !bytes.Equal(b, sealed) {
			t.Fatalf("opened forged bytes %x to %q", b, plain)
		}
	})
}
