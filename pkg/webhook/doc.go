// Package webhook implements the signing scheme of eventline's webhook
// deliveries (docs/contract.md §3), which is Standard Webhooks 1.0 with
// symmetric (HMAC-SHA256, v1) signatures, or asymmetric (Ed25519, v1a) ones
// for endpoints that opt in. Receivers use it to check that a delivery
// really comes from eventline; eventline's own sender uses it to sign them.
//
// Every delivery carries three headers:
//
//	webhook-id:        the event id, the same on every retry (use it to de-duplicate)
//	webhook-timestamp: Unix seconds of this attempt
//	webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">
//
// The HMAC key is the endpoint secret, "whsec_" followed by the standard
// base64 encoding of 24 to 64 random bytes. During a secret rotation the
// signature header holds one space-separated signature per secret, and a
// receiver accepts the delivery if any of them matches.
//
// An Ed25519 endpoint is signed with a key that never leaves eventline
// ("whsk_..."); its deliveries carry "v1a,<base64 signature>" over the same
// content, and NewVerifier given its public key ("whpk_...", shown by the
// webhook API) checks those.
//
// A receiver verifies the raw body, before decoding it:
//
//	v, err := webhook.NewVerifier(os.Getenv("EVENTLINE_WEBHOOK_SECRET"))
//	...
//	body, err := io.ReadAll(r.Body)
//	...
//	if err := v.Verify(r.Header, body); err != nil {
//		http.Error(w, "invalid webhook", http.StatusUnauthorized)
//		return
//	}
//
// Any library that implements Standard Webhooks verifies eventline's
// deliveries just as well; this package has no dependencies outside the
// standard library.
package webhook
