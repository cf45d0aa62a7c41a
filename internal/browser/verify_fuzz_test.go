package browser

import (
	"testing"
	"time"
)

// FuzzVerify: no input makes Verify panic, and whatever it accepts is a
// token the signer itself minted for the same claims.
func FuzzVerify(f *testing.F) {
	s, err := NewSigner(testSecret)
	if err != nil {
		f.Fatal(err)
	}
	s.now = func() time.Time { return time.Unix(1_800_000_000, 0) }
	good, err := s.Mint(Claims{Tenant: "acme", User: "u1", Scopes: []string{ScopeInbox}, Expires: 1_800_000_600})
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{good, good[:len(good)-1], "elu_.", "elu_e30.", "el_x_y", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		c, err := s.Verify(token)
		if err != nil {
			return
		}
		again, err := s.Mint(c)
		if err != nil || again != token {
			t.Fatalf("accepted %q, which the signer mints as %q", token, again)
		}
	})
}
