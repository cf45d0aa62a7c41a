package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/docs/schema"
	"github.com/eventline/eventline/internal/ingest"
	"github.com/eventline/eventline/internal/testenv"
)

// TestSchemaAgreesWithIngest: the request schema
// (docs/schema/event-input.schema.json#/$defs/request) and POST /v1/events
// accept and refuse the same bodies - the handler tests' tables and every
// committed fuzz corpus entry of this package - except where a body touches
// a rule JSON Schema cannot express (schema.Rule), which is listed.
func TestSchemaAgreesWithIngest(t *testing.T) {
	t.Parallel()
	s, err := schema.Compile()
	require.NoError(t, err)
	svc := ingest.NewService(instantAppender{}, benchKeys{}, ingest.Config{}, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	go svc.Run(context.Background())
	t.Cleanup(svc.Close)
	mux := http.NewServeMux()
	svc.Routes(mux)

	one, err := json.Marshal(event("", 1))
	require.NoError(t, err)
	many := make([]map[string]any, 1001)
	for i := range many {
		many[i] = event(fmt.Sprintf("e%d", i), i)
	}
	thousand, err := json.Marshal(batch(many[:1000]...))
	require.NoError(t, err)
	tooMany, err := json.Marshal(batch(many...))
	require.NoError(t, err)
	dup, err := json.Marshal(batch(event("same", 1), event("same", 2)))
	require.NoError(t, err)
	cases := map[string][]byte{
		"one event": one, "1000 events": thousand, "1001 events": tooMany, "repeated id": dup,
		"over 1 MiB":   append(bytes.Repeat([]byte(" "), 1<<20), one...),
		"other tenant": []byte(strings.Replace(string(one), "{", `{"tenant":"globex",`, 1)),
	}
	for _, c := range unstorableBodies {
		cases["unstorable/"+c.name] = []byte(c.body)
	}
	for body := range notEventBodies {
		cases["not an event/"+body] = []byte(body)
	}
	for name, body := range testenv.FuzzCorpus(t, "testdata/fuzz") {
		cases["corpus/"+name] = body
	}
	checked := testenv.SchemaAgreement(t, s.Request, cases, func(body []byte) error {
		req := httptest.NewRequest(http.MethodPost, "/v1/events", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer x")
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		switch w.Code {
		case http.StatusAccepted:
			return nil
		case http.StatusUnprocessableEntity, http.StatusRequestEntityTooLarge:
			return fmt.Errorf("%d %s", w.Code, w.Body)
		}
		t.Fatalf("unexpected answer %d %s", w.Code, w.Body)
		return nil
	}, time.Now(), "acme")
	require.Greater(t, checked, 10)
}
