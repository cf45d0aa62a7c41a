package httpapi

import (
	"net/http"
	"slices"
	"sync"
)

// Router is where a service's routes are registered: an *http.ServeMux or
// a Mux.
type Router interface {
	Handle(pattern string, h http.Handler)
	HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request))
}

// Mux is an http.ServeMux that answers what it has no route for as
// problem+json (Fallback) and remembers its patterns, so that the routes a
// service serves can be held against the API description (api/openapi.yaml).
type Mux struct {
	mux      *http.ServeMux
	mu       sync.Mutex
	patterns []string
}

// NewMux returns an empty Mux.
func NewMux() *Mux {
	m := &Mux{mux: http.NewServeMux()}
	m.mux.Handle("/", Fallback(m.mux))
	return m
}

// Handle registers h for pattern, as http.ServeMux.Handle does.
func (m *Mux) Handle(pattern string, h http.Handler) {
	m.mux.Handle(pattern, h)
	m.mu.Lock()
	m.patterns = append(m.patterns, pattern)
	m.mu.Unlock()
}

// HandleFunc registers h for pattern, as http.ServeMux.HandleFunc does.
func (m *Mux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(h))
}

// ServeHTTP dispatches r to the handler of the pattern it matches.
func (m *Mux) ServeHTTP(w http.ResponseWriter, r *http.Request) { m.mux.ServeHTTP(w, r) }

// Handler returns the handler and pattern r would be served by; the
// pattern is "/" when no route matches.
func (m *Mux) Handler(r *http.Request) (http.Handler, string) { return m.mux.Handler(r) }

// Patterns lists the registered patterns in order of registration.
func (m *Mux) Patterns() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.patterns)
}
