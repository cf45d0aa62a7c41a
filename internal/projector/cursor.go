package projector

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"
)

// cursor is a keyset position: the (occurred_at, seq) of the last event of
// a page. It is bound to the tenant that received it, so a cursor made by
// hand or taken from another tenant is refused instead of being trusted;
// the tenant filter of every query is applied regardless.
type cursor struct {
	Version int `json:"v"`
	// Kind is the list it continues: "" a timeline, cursorRejected the
	// rejected events (same position: a time and a stream sequence).
	Kind       string `json:"k,omitempty"`
	Tenant     string `json:"t"`
	OccurredAt int64  `json:"o"` // Unix microseconds
	Seq        int64  `json:"s"`
}

var errBadCursor = errors.New("cursor is not valid: pass back next_cursor exactly as received, with the same key")

// cursorRejected is the Kind of a GET /v1/rejected-events cursor.
const cursorRejected = "rejected"

func encodeCursor(tenant string, occurredAt time.Time, seq uint64) string {
	return encodeCursorOf("", tenant, occurredAt, seq)
}

func encodeCursorOf(kind, tenant string, at time.Time, seq uint64) string {
	b, _ := json.Marshal(cursor{Version: 1, Kind: kind, Tenant: tenant, OccurredAt: at.UnixMicro(), Seq: int64(seq)})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s, tenant string) (cursor, error) { return decodeCursorOf("", s, tenant) }

// decodeCursorOf reads a cursor of a kind of list, refusing one of another
// kind or tenant.
func decodeCursorOf(kind, s, tenant string) (cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(raw) > 256 {
		return cursor{}, errBadCursor
	}
	var c cursor
	if err := json.Unmarshal(raw, &c); err != nil || c.Version != 1 || c.Seq < 0 {
		return cursor{}, errBadCursor
	}
	if c.Tenant != tenant || c.Kind != kind {
		return cursor{}, errBadCursor
	}
	return c, nil
}

func (c cursor) time() time.Time { return time.UnixMicro(c.OccurredAt).UTC() }
