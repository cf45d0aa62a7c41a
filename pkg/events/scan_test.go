package events

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzFastEventScan: whatever fastEvent's own scan decodes, encoding/json
// decodes the same.
func FuzzFastEventScan(f *testing.F) {
	f.Add([]byte(`{"id":"a","tenant":"acme","action":"x","eventable":{"type":"t","id":"1"},"creator":{"id":"2","type":"u"},"parents":[{"type":"b","id":"3"}],"particulars":{"a":[1,"}"]},"occurred_at":"2026-11-25T09:00:00Z"}`))
	f.Add([]byte(` { "parents" : [ ] , "particulars" : null , "id" : "a" } `))
	f.Add([]byte(`{"id":"a","id":"b","eventable":{"type":"t","type":"u"}}`))
	f.Add([]byte(`{"parents":[{"type":"b","id":"3"}],"parents":[{"type":"c"}]}`))
	f.Add([]byte(`{"Action":"x","eventable":{"Type":"t","id":"\u00e9"},"creator":null,"occurred_at":null}`))
	f.Add([]byte(`{"id":"Zoë","tenant":1,"parents":null}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) {
			return
		}
		var want fastEvent
		if json.Unmarshal(data, &want) != nil {
			return
		}
		var scanned fastEvent
		if scanned.scan(data) && !reflect.DeepEqual(want, scanned) {
			t.Fatalf("scan differs:\njson %+v\nscan %+v\nbody %q", want, scanned, data)
		}
	})
}
