// Package schema holds eventline's machine-readable event contract: the JSON
// Schemas (2020-12) of an event as a producer sends it
// (event-input.schema.json, over HTTP and NATS alike) and as eventline
// stores and delivers it (event.schema.json). docs/asyncapi.yaml describes
// the NATS side with them. Tests prove the schemas and pkg/events agree.
package schema

import (
	"bytes"
	"embed"
	"fmt"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Files holds the schema documents.
//
//go:embed *.schema.json
var Files embed.FS

// The $id of each schema.
const (
	InputID = "https://raw.githubusercontent.com/eventline/eventline/main/docs/schema/event-input.schema.json"
	EventID = "https://raw.githubusercontent.com/eventline/eventline/main/docs/schema/event.schema.json"
)

// Schemas are the compiled schemas, formats asserted (date-time).
type Schemas struct {
	// Input is one event as a producer sends it.
	Input *jsonschema.Schema
	// Request is the body of POST /v1/events: one event or a batch.
	Request *jsonschema.Schema
	// Event is an event as eventline stores and delivers it.
	Event *jsonschema.Schema
}

// Compile compiles the embedded schemas.
func Compile() (*Schemas, error) {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	for id, name := range map[string]string{InputID: "event-input.schema.json", EventID: "event.schema.json"} {
		raw, err := Files.ReadFile(name)
		if err != nil {
			return nil, err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		if err := c.AddResource(id, doc); err != nil {
			return nil, fmt.Errorf("add %s: %w", name, err)
		}
	}
	var s Schemas
	var err error
	if s.Input, err = c.Compile(InputID); err != nil {
		return nil, err
	}
	if s.Request, err = c.Compile(InputID + "#/$defs/request"); err != nil {
		return nil, err
	}
	if s.Event, err = c.Compile(EventID); err != nil {
		return nil, err
	}
	return &s, nil
}

// Validate reads doc as JSON and validates it against sch; an error means
// the document is not JSON or the schema refuses it.
func Validate(sch *jsonschema.Schema, doc []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return sch.Validate(v)
}
