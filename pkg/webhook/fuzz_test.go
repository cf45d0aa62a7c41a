package webhook_test

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eventline/eventline/pkg/webhook"
)

// FuzzVerify feeds arbitrary header values and bodies to Verify. Whatever the
// input, it must not panic and must fail only with one of the package's
// sentinel errors; it may succeed only if the signature header holds the
// exact signature. And a message signed with Sign at a time within the
// tolerance must verify, whatever else the signature header holds.
func FuzzVerify(f *testing.F) {
	f.Add(vectorMsgID, "1614265330", vectorSignature, []byte(vectorPayload), int64(0))
	f.Add("", "", "", []byte(nil), int64(0))
	f.Add("a.b", "+1614265330", "v1, v1a,x v1,,, ,", []byte("{}"), int64(-301e9))
	f.Add("evt_1", "99999999999999999999", "v1,"+strings.Repeat("A", 44), []byte("x"), int64(1<<62))
	f.Add("evt_1", "0001614265330", vectorOtherSignature+"\tv1,", []byte{0xff, 0}, int64(300e9))
	f.Add(vectorMsgID, "9223372036854775807", "v1a,"+vectorSignature[3:], []byte(vectorPayload), int64(-1<<63))

	at := time.Unix(vectorTimestamp, 0)
	v, err := webhook.NewVerifier(vectorSecret, webhook.WithClock(func() time.Time { return at }))
	if err != nil {
		f.Fatal(err)
	}
	sentinels := []error{webhook.ErrMissingHeaders, webhook.ErrInvalidHeaders, webhook.ErrTimestampTooOld, webhook.ErrTimestampTooNew, webhook.ErrNoMatchingSignature}

	f.Fuzz(func(t *testing.T, id, timestamp, signature string, body []byte, offset int64) {
		h := http.Header{}
		h.Set(webhook.HeaderID, id)
		h.Set(webhook.HeaderTimestamp, timestamp)
		h.Set(webhook.HeaderSignature, signature)
		err := v.Verify(h, body)
		if err != nil {
			if !slices.ContainsFunc(sentinels, func(s error) bool { return errors.Is(err, s) }) {
				t.Fatalf("error is none of the sentinels: %v", err)
			}
		} else {
			ts, perr := strconv.ParseInt(timestamp, 10, 64)
			if perr != nil {
				t.Fatalf("verified with timestamp %q", timestamp)
			}
			want, serr := webhook.Sign(vectorSecret, id, time.Unix(ts, 0), body)
			if serr != nil || !slices.Contains(strings.Fields(signature), want) {
				t.Fatalf("verified without the right signature %q in %q (sign error %v)", want, signature, serr)
			}
		}

		// Within (-tolerance, +tolerance), so within it once truncated to
		// whole seconds.
		sent := at.Add(time.Duration(offset % int64(webhook.DefaultTolerance)))
		good, err := webhook.Sign(vectorSecret, id, sent, body)
		if err != nil {
			if id != "" && !strings.Contains(id, ".") {
				t.Fatalf("Sign refused id %q: %v", id, err)
			}
			return
		}
		h.Set(webhook.HeaderTimestamp, strconv.FormatInt(sent.Unix(), 10))
		h.Set(webhook.HeaderSignature, signature+" "+good)
		if err := v.Verify(h, body); err != nil {
			t.Fatalf("correctly signed message (id %q, sent %s) does not verify: %v", id, sent, err)
		}
	})
}
