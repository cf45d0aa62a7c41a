package webhook_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"time"

	"github.com/eventline/eventline/pkg/webhook"
)

// A receiver checks every delivery before it trusts the body. Build the
// Verifier once, with the endpoint secret eventline returned when the
// webhook was created; verify the raw body, before decoding it.
func ExampleVerifier() {
	verifier, err := webhook.NewVerifier("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		log.Fatal(err)
	}

	receive := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		if err := verifier.Verify(r.Header, body); err != nil {
			fmt.Println("rejected:", err) // log it; never process the body
			http.Error(w, "invalid webhook", http.StatusUnauthorized)
			return
		}
		var event struct {
			Type string `json:"type"`
			Seq  int64  `json:"seq"`
		}
		if err := json.Unmarshal(body, &event); err != nil {
			http.Error(w, "not JSON", http.StatusBadRequest)
			return
		}
		// webhook-id is the event id, the same on every retry: process
		// each id once.
		fmt.Println("received", r.Header.Get(webhook.HeaderID), event.Type, event.Seq)
		w.WriteHeader(http.StatusNoContent)
	})

	// A delivery as eventline sends it.
	body := []byte(`{"id":"0193a7c2-5b1e-7c3a-9f2e-6a1d2b3c4d5e","type":"card.closed","seq":1234}`)
	now := time.Now()
	signature, err := webhook.Sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "0193a7c2-5b1e-7c3a-9f2e-6a1d2b3c4d5e", now, body)
	if err != nil {
		log.Fatal(err)
	}
	deliver := func(body []byte) int {
		r := httptest.NewRequest(http.MethodPost, "/hooks/eventline", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set(webhook.HeaderID, "0193a7c2-5b1e-7c3a-9f2e-6a1d2b3c4d5e")
		r.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
		r.Header.Set(webhook.HeaderSignature, signature)
		w := httptest.NewRecorder()
		receive(w, r)
		return w.Code
	}

	fmt.Println(deliver(body))
	fmt.Println(deliver(bytes.Replace(body, []byte("1234"), []byte("1235"), 1)))
	// Output:
	// received 0193a7c2-5b1e-7c3a-9f2e-6a1d2b3c4d5e card.closed 1234
	// 204
	// rejected: webhook: no matching signature: none of the 1 v1 signatures matches; check the secret, and verify the raw body before decoding it
	// 401
}

// During a secret rotation, a delivery carries one signature per secret,
// newest first, and receivers holding either secret accept it.
func ExampleSignAll() {
	const oldSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	const newSecret = "whsec_bmV3IHNlY3JldCBvZiBhdCBsZWFzdCAyNCBieXRlcw=="
	header, err := webhook.SignAll([]string{newSecret, oldSecret}, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(header)
	// Output:
	// v1,78WE+WaIim3SstTdtEZKb+ehoa7/PAAP62MF2+HJQg8= v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=
}
