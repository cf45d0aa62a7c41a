package webhook_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eventline/eventline/pkg/webhook"
)

// TestEd25519SignVerify: a delivery signed with a signing key carries a
// v1a signature that the public key verifies, that crypto/ed25519
// verifies independently, and that a wrong key or a changed body fails.
func TestEd25519SignVerify(t *testing.T) {
	key, err := webhook.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := webhook.PublicKey(key)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	body := []byte(`{"id":"e1","type":"card.closed"}`)
	sig, err := webhook.Sign(key, "e1", now, body)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sig, "v1a,") {
		t.Fatalf("signature %q, want v1a,...", sig)
	}
	h := http.Header{}
	h.Set(webhook.HeaderID, "e1")
	h.Set(webhook.HeaderTimestamp, itoa(now.Unix()))
	h.Set(webhook.HeaderSignature, sig)
	if err := webhook.Verify(pub, h, body); err != nil {
		t.Fatalf("verify with the public key: %v", err)
	}
	// Independently, with crypto/ed25519.
	rawPub, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(pub, "whpk_"))
	rawSig, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(sig, "v1a,"))
	if !ed25519.Verify(rawPub, []byte("e1."+itoa(now.Unix())+"."+string(body)), rawSig) {
		t.Fatal("crypto/ed25519 does not verify the signature of {id}.{timestamp}.{body}")
	}
	if err := webhook.Verify(pub, h, append(body, ' ')); !errors.Is(err, webhook.ErrNoMatchingSignature) {
		t.Fatalf("a changed body: %v, want no matching signature", err)
	}
	other, _ := webhook.GenerateSigningKey()
	otherPub, _ := webhook.PublicKey(other)
	if err := webhook.Verify(otherPub, h, body); !errors.Is(err, webhook.ErrNoMatchingSignature) {
		t.Fatalf("another key: %v, want no matching signature", err)
	}
	// A symmetric secret finds no v1 signature in a v1a-only header.
	secret, _ := webhook.GenerateSecret()
	if err := webhook.Verify(secret, h, body); !errors.Is(err, webhook.ErrNoMatchingSignature) {
		t.Fatalf("an HMAC secret on a v1a header: %v", err)
	}
	// During a rotation both kinds can sign one delivery.
	both, err := webhook.SignAll([]string{key, secret}, "e1", now, body)
	if err != nil {
		t.Fatal(err)
	}
	h.Set(webhook.HeaderSignature, both)
	if webhook.Verify(pub, h, body) != nil || webhook.Verify(secret, h, body) != nil {
		t.Fatalf("a header with both signatures verifies with either key: %s", both)
	}
}

// TestEd25519VerifiedByNode: Node's crypto.verify (an implementation
// independent of Go's) accepts eventline's v1a signature. It needs node
// on the PATH, as CI has.
func TestEd25519VerifiedByNode(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("this test runs Node.js to verify a v1a signature independently: install node (Debian: apt-get install nodejs)")
	}
	key, _ := webhook.GenerateSigningKey()
	pub, _ := webhook.PublicKey(key)
	now := time.Now()
	body := `{"id":"e1","particulars":{"title":"Fix <login> ✓"}}`
	sig, err := webhook.Sign(key, "e1", now, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "verify.mjs")
	if err := os.WriteFile(script, []byte(`
import { createPublicKey, verify } from "node:crypto";
const [pub, id, ts, body, sig] = process.argv.slice(2);
const raw = Buffer.from(pub.replace(/^whpk_/, ""), "base64");
// An Ed25519 SubjectPublicKeyInfo is a fixed 12-byte prefix and the key.
const der = Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), raw]);
const key = createPublicKey({ key: der, format: "der", type: "spki" });
const ok = sig.split(" ").some((s) => {
  const [v, b64] = s.split(",");
  return v === "v1a" && verify(null, Buffer.from(id + "." + ts + "." + body), key, Buffer.from(b64, "base64"));
});
process.exit(ok ? 0 : 1);
`), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(b string) error {
		return exec.Command(node, script, pub, "e1", itoa(now.Unix()), b, sig).Run()
	}
	if err := run(body); err != nil {
		t.Fatalf("node does not verify the v1a signature: %v", err)
	}
	if err := run(body + " "); err == nil {
		t.Fatal("node verified a changed body: the check cannot fail")
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
