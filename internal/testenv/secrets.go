package testenv

import (
	"testing"

	"github.com/eventline/eventline/internal/secretbox"
)

// SecretKey is an EVENTLINE_SECRET_KEY for tests (base64 of 32 bytes): the
// webhooker refuses to start without one.
const SecretKey = "bXkgdGVzdCBrZXkgaXMgMzIgYnl0ZXMgbG9uZyEhISE="

// Keyring is a keyring over a fresh random key, to seal webhook secrets
// with in tests.
func Keyring(t testing.TB) *secretbox.Keyring {
	t.Helper()
	key, err := secretbox.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := secretbox.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}
