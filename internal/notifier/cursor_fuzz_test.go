package notifier

import "testing"

// FuzzInboxCursor: a cursor is accepted only for the tenant and user it
// was made for, never with a negative id, and what is accepted survives a
// round trip.
func FuzzInboxCursor(f *testing.F) {
	f.Add(encodeCursor(cursor{Tenant: "acme", User: "u1", At: 1_700_000_000_000_000, ID: 42}), "acme", "u1")
	f.Add(encodeCursor(cursor{Tenant: "acme", User: "u1", At: 5, ObjType: "card", ObjID: "c1"}), "acme", "u2")
	f.Add("eyJ2IjoxfQ", "acme", "u1")
	f.Add("", "", "")
	f.Fuzz(func(t *testing.T, s, tenant, user string) {
		c, err := decodeCursor(s, tenant, user)
		if err != nil {
			return
		}
		if c.Tenant != tenant || c.User != user || c.Version != 1 || c.ID < 0 {
			t.Fatalf("accepted %+v for tenant %q user %q", c, tenant, user)
		}
		again, err := decodeCursor(encodeCursor(c), tenant, user)
		if err != nil || again != c {
			t.Fatalf("round trip of %+v: %+v %v", c, again, err)
		}
	})
}
