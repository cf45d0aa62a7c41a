// Package api holds the OpenAPI 3.1 description of every eventline HTTP
// route (openapi.yaml) and serves it. Each operation's x-service names the
// service that answers it; a service serves its own operations at
// GET /openapi.json and eventline dev serves them all (docs/api.md).
package api

import (
	_ "embed"
	"encoding/json"
	"net/http"
	"sync"

	"sigs.k8s.io/yaml"
)

//go:embed openapi.yaml
var source []byte

// Services that answer operations, as openapi.yaml's x-service names them.
// All marks an operation every service answers; Admin one of every
// service's admin address.
const (
	Ingest    = "ingest"
	Projector = "projector"
	Notifier  = "notifier"
	Webhooker = "webhooker"
	All       = "all"
	Admin     = "admin"
)

var document = sync.OnceValues(func() (map[string]any, error) {
	j, err := yaml.YAMLToJSON(source)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	return doc, json.Unmarshal(j, &doc)
})

// YAML is the document as written.
func YAML() []byte { return source }

// Document returns the document as JSON with only the operations the
// services answer (every operation when services is empty).
func Document(services ...string) ([]byte, error) {
	doc, err := document()
	if err != nil {
		return nil, err
	}
	if len(services) == 0 {
		return json.Marshal(doc)
	}
	keep := map[string]bool{All: true}
	for _, s := range services {
		keep[s] = true
	}
	out := make(map[string]any, len(doc))
	for k, v := range doc {
		out[k] = v
	}
	paths := map[string]any{}
	for path, item := range doc["paths"].(map[string]any) {
		kept := map[string]any{}
		for method, op := range item.(map[string]any) {
			o, isOp := op.(map[string]any)
			if !isOp || method == "parameters" {
				kept[method] = op
				continue
			}
			if s, _ := o["x-service"].(string); keep[s] {
				kept[method] = op
			}
		}
		if len(kept) > 1 || (len(kept) == 1 && kept["parameters"] == nil) {
			paths[path] = kept
		}
	}
	out["paths"] = paths
	return json.Marshal(out)
}

// Handler serves Document(services...) as application/json.
func Handler(services ...string) http.Handler {
	body, err := Document(services...)
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(body)
	})
}
