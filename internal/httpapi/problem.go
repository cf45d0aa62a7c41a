// Package httpapi holds what every eventline HTTP API shares: RFC 9457
// problem responses, JSON bodies, and bearer-key authentication with scopes
// (docs/contract.md §2).
package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/eventline/eventline/pkg/events"
)

// Problem is an RFC 9457 problem details body.
type Problem struct {
	Type   string              `json:"type"`
	Title  string              `json:"title"`
	Status int                 `json:"status"`
	Detail string              `json:"detail,omitempty"`
	Errors []events.FieldError `json:"errors,omitempty"`
}

// Problem types. Generic HTTP conditions use "about:blank" with the status
// phrase as title, as RFC 9457 suggests.
const (
	TypeValidation = "urn:eventline:problem:validation"
	TypeRateLimit  = "urn:eventline:problem:rate-limited"
)

// WriteProblem writes p as application/problem+json.
func WriteProblem(w http.ResponseWriter, p Problem) {
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	encode(w, p)
}

// encode writes v as JSON without HTML escaping: bodies are JSON for
// programs, and "<key>" should read as "<key>", not "\u003ckey\u003e".
func encode(w http.ResponseWriter, v any) {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// Error writes a generic problem with a status and a detail saying what to
// do.
func Error(w http.ResponseWriter, status int, detail string) {
	WriteProblem(w, Problem{Status: status, Detail: detail})
}

// Unavailable writes 503 with a Retry-After.
func Unavailable(w http.ResponseWriter, retryAfter time.Duration, detail string) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(retryAfter.Seconds()+0.999))))
	Error(w, http.StatusServiceUnavailable, detail)
}

// ValidationFailed writes 422 listing every field error.
func ValidationFailed(w http.ResponseWriter, detail string, errs []events.FieldError) {
	WriteProblem(w, Problem{Type: TypeValidation, Title: "Validation failed", Status: http.StatusUnprocessableEntity, Detail: detail, Errors: errs})
}

// JSON writes v as an application/json body with status.
func JSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	encode(w, v)
}

// JSONBytes writes body, a JSON document as JSON writes it (newline
// included), with status: for the few hot responses written without
// reflection.
func JSONBytes(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// NotFound answers every request with a 404 problem; mount it on "/".
func NotFound() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		Error(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
}

// Fallback answers what mux has no route for, as problem+json: 405 with an
// Allow header when the path has routes for other methods, else 404. Mount
// it on "/" of mux itself (a catch-all route would otherwise turn every
// wrong method into a 404, and without one ServeMux answers in plain text).
func Fallback(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pattern := mux.Handler(probe); pattern != "" && pattern != "/" {
				allow = append(allow, m)
			}
		}
		if len(allow) == 0 {
			Error(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
			return
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		Error(w, http.StatusMethodNotAllowed, r.Method+" is not allowed on "+r.URL.Path+"; use "+strings.Join(allow, " or "))
	})
}

// ReadJSON reads a request body of at most limit bytes sent as
// application/json, answering 415, 413 or 400 (and returning false)
// otherwise.
func ReadJSON(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		Error(w, http.StatusUnsupportedMediaType, "send the body as Content-Type: application/json")
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			Error(w, http.StatusRequestEntityTooLarge, "the body is larger than "+strconv.FormatInt(limit, 10)+" bytes")
		} else {
			Error(w, http.StatusBadRequest, "could not read the body")
		}
		return nil, false
	}
	return body, true
}
