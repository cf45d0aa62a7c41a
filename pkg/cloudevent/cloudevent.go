// Package cloudevent maps eventline events to and from CloudEvents 1.0 in
// structured JSON mode (docs/cloudevents.md): ingest accepts
// application/cloudevents+json and application/cloudevents-batch+json, and
// an endpoint with format "cloudevents" receives its deliveries as
// CloudEvents.
//
// The mapping:
//
//	CloudEvents        eventline
//	id                 id
//	source             /tenants/<tenant> out; required in, not kept (the tenant comes from the API key)
//	type               type: <eventable type>.<action>
//	subject            <eventable type>/<eventable id> out; ignored in
//	time               occurred_at
//	datacontenttype    application/json
//	data               {"eventable", "creator", "parents", "particulars"}
//	sequence           seq, as a decimal string (out only; the CloudEvents sequence extension)
//	recordedat         recorded_at (out only)
//	traceparent        traceparent (out only; the distributed tracing extension)
//
// So a CloudEvent sent to ingest and delivered to a "cloudevents" endpoint
// comes back with the same id, type, time and data; source and subject are
// eventline's.
package cloudevent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/eventline/eventline/pkg/events"
)

// Media types of structured mode.
const (
	MediaType      = "application/cloudevents+json"
	BatchMediaType = "application/cloudevents-batch+json"
	SpecVersion    = "1.0"
)

// data is the CloudEvent's data: the event's objects.
type data struct {
	Eventable   events.Ref      `json:"eventable"`
	Creator     events.Ref      `json:"creator"`
	Parents     []events.Ref    `json:"parents"`
	Particulars json.RawMessage `json:"particulars"`
}

// structured is a CloudEvent in structured JSON mode, as eventline writes it.
type structured struct {
	SpecVersion     string `json:"specversion"`
	ID              string `json:"id"`
	Source          string `json:"source"`
	Type            string `json:"type"`
	Subject         string `json:"subject"`
	Time            string `json:"time,omitempty"`
	DataContentType string `json:"datacontenttype"`
	Sequence        string `json:"sequence,omitempty"`
	RecordedAt      string `json:"recordedat,omitempty"`
	Traceparent     string `json:"traceparent,omitempty"`
	Data            data   `json:"data"`
}

// Source is the CloudEvents source of a tenant's events.
func Source(tenant string) string { return "/tenants/" + tenant }

// Marshal encodes a stored event (with type, and seq and recorded_at when
// known) as a structured-mode CloudEvent.
func Marshal(e events.Event) ([]byte, error) {
	s := structured{
		SpecVersion: SpecVersion, ID: e.ID, Source: Source(e.Tenant), Type: e.Type,
		Subject:         e.Eventable.Type + "/" + e.Eventable.ID,
		DataContentType: "application/json", Traceparent: e.Traceparent,
		Data: data{Eventable: e.Eventable, Creator: e.Creator, Parents: e.Parents, Particulars: e.Particulars},
	}
	if s.Type == "" {
		s.Type = e.Eventable.Type + "." + e.Action
	}
	if s.Data.Parents == nil {
		s.Data.Parents = []events.Ref{}
	}
	if len(s.Data.Particulars) == 0 {
		s.Data.Particulars = json.RawMessage("{}")
	}
	if !e.OccurredAt.IsZero() {
		s.Time = e.OccurredAt.UTC().Format(time.RFC3339Nano)
	}
	if !e.RecordedAt.IsZero() {
		s.RecordedAt = e.RecordedAt.UTC().Format(time.RFC3339Nano)
	}
	if e.Seq > 0 {
		s.Sequence = strconv.FormatUint(e.Seq, 10)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return nil, fmt.Errorf("encode cloudevent %s: %w", e.ID, err)
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// ToInput converts one structured-mode CloudEvent (the index-th of its
// request) into the input form of an eventline event, the body
// POST /v1/events takes, which ingest then validates like any other. It
// returns field errors named by CloudEvents attribute for what the input
// form cannot express.
func ToInput(raw json.RawMessage, index int) (json.RawMessage, []events.FieldError) {
	bad := func(field, msg string) []events.FieldError {
		return []events.FieldError{{Index: index, Field: field, Message: msg}}
	}
	var attrs map[string]json.RawMessage
	if err := json.Unmarshal(raw, &attrs); err != nil || attrs == nil {
		return nil, bad("event", "must be a CloudEvent: a JSON object in structured mode")
	}
	str := func(name string) (string, bool) {
		v, ok := attrs[name]
		if !ok {
			return "", false
		}
		var s string
		if json.Unmarshal(v, &s) != nil {
			return "", false
		}
		return s, true
	}
	var errs []events.FieldError
	if v, _ := str("specversion"); v != SpecVersion {
		errs = append(errs, bad("specversion", `must be "1.0"`)...)
	}
	id, ok := str("id")
	if !ok || id == "" {
		errs = append(errs, bad("id", "is required: a non-empty string, unique per event (it makes re-sends idempotent)")...)
	}
	if s, ok := str("source"); !ok || s == "" {
		errs = append(errs, bad("source", "is required by CloudEvents: a non-empty URI-reference (eventline does not keep it; the tenant comes from the API key)")...)
	}
	typ, _ := str("type")
	dot := strings.LastIndexByte(typ, '.')
	if dot <= 0 || dot == len(typ)-1 {
		errs = append(errs, bad("type", `must be "<eventable type>.<action>", e.g. "card.closed"`)...)
	}
	if _, ok := attrs["data_base64"]; ok {
		errs = append(errs, bad("data_base64", "is not accepted: send data as a JSON object")...)
	}
	if ct, ok := str("datacontenttype"); ok && ct != "application/json" && !strings.HasSuffix(ct, "+json") {
		errs = append(errs, bad("datacontenttype", "must be application/json (or omitted)")...)
	}
	var d map[string]json.RawMessage
	if v, ok := attrs["data"]; !ok || json.Unmarshal(v, &d) != nil || d == nil {
		errs = append(errs, bad("data", `must be a JSON object: {"eventable", "creator", "parents", "particulars"}`)...)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	in := map[string]json.RawMessage{}
	for k, v := range d {
		in[k] = v // eventable, creator, parents, particulars; anything else is refused by validation
	}
	idJSON, _ := json.Marshal(id)
	action, _ := json.Marshal(typ[dot+1:])
	in["id"], in["action"] = idJSON, action
	if t, ok := attrs["time"]; ok {
		in["occurred_at"] = t
	}
	if ev, ok := d["eventable"]; ok {
		var ref struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(ev, &ref) == nil && ref.Type != "" && ref.Type != typ[:dot] {
			return nil, bad("type", fmt.Sprintf("is %q but data.eventable.type is %q: type must be <eventable type>.<action>", typ, ref.Type))
		}
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false) // particulars pass through as sent
	if err := enc.Encode(in); err != nil {
		return nil, bad("event", err.Error())
	}
	return bytes.TrimRight(out.Bytes(), "\n"), nil
}

// Attribute names an eventline input field path (as validation reports
// it) by where it is in a CloudEvent: "action" is in "type", "occurred_at"
// is "time", the objects are under "data".
func Attribute(field string) string {
	switch field {
	case "id", "event", "body", "events":
		return field
	case "action":
		return "type"
	case "occurred_at":
		return "time"
	}
	return "data." + field
}
