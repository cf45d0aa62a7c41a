package signedtoken_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/signedtoken"
)

type claims struct {
	Tenant string `json:"t"`
}

var key = bytes.Repeat([]byte{7}, 32)

func TestMintVerify(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	s, err := signedtoken.New(key, "tk_", clock)
	require.NoError(t, err)
	tok, exp, err := s.Mint(claims{Tenant: "acme"}, time.Minute)
	require.NoError(t, err)
	require.Equal(t, now.Add(time.Minute), exp)

	var c claims
	got, err := s.Verify(tok, &c)
	require.NoError(t, err)
	require.Equal(t, exp, got)
	require.Equal(t, "acme", c.Tenant)

	// Another kind of token under the same key, another key, and every
	// single changed character are refused.
	other, err := signedtoken.New(key, "xx_", clock)
	require.NoError(t, err)
	_, err = other.Verify("xx_"+strings.TrimPrefix(tok, "tk_"), &c)
	require.ErrorIs(t, err, signedtoken.ErrInvalid)
	otherKey, err := signedtoken.New(bytes.Repeat([]byte{8}, 32), "tk_", clock)
	require.NoError(t, err)
	_, err = otherKey.Verify(tok, &c)
	require.ErrorIs(t, err, signedtoken.ErrInvalid)
	for i := len("tk_"); i < len(tok); i++ {
		b := []byte(tok)
		b[i] ^= 1
		_, err := s.Verify(string(b), &c)
		require.Error(t, err, "changed byte %d", i)
	}

	_, err = s.Verify(tok[:20]+"\n"+tok[20:], &c)
	require.ErrorIs(t, err, signedtoken.ErrInvalid)

	now = now.Add(time.Minute)
	_, err = s.Verify(tok, &c)
	require.ErrorIs(t, err, signedtoken.ErrExpired)
}

func TestNewRefuses(t *testing.T) {
	t.Parallel()
	_, err := signedtoken.New(key[:31], "tk_", nil)
	require.ErrorContains(t, err, "at least 32")
	_, err = signedtoken.New(key, "", nil)
	require.Error(t, err)
	_, err = signedtoken.New(key, "a.b", nil)
	require.Error(t, err)
	s, err := signedtoken.New(key, "tk_", nil)
	require.NoError(t, err)
	_, _, err = s.Mint(claims{}, 0)
	require.Error(t, err)
}

// FuzzVerify: no input makes Verify panic, and nothing but a minted token
// verifies.
func FuzzVerify(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	s, err := signedtoken.New(key, "tk_", func() time.Time { return now })
	require.NoError(f, err)
	tok, _, err := s.Mint(claims{Tenant: "acme"}, time.Hour)
	require.NoError(f, err)
	f.Add(tok)
	f.Add(tok[:40] + "\n" + tok[40:]) // the decoder skips newlines: a variant once verified
	f.Add(tok + "\r")
	f.Add("tk_.")
	f.Add("tk_e30.AAAA")
	f.Fuzz(func(t *testing.T, in string) {
		var c claims
		if _, err := s.Verify(in, &c); err == nil && in != tok {
			t.Fatalf("verified a token that was not minted: %q", in)
		}
	})
}
