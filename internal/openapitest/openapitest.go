// Package openapitest holds live HTTP traffic against the API description
// (api/openapi.yaml): an API test serves its handler through Check, and
// every answer must be one the document describes — its status, its media
// type and its body — and every request the handler accepted must be one
// the document allows. An answer the document lacks fails the test.
package openapitest

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	verrors "github.com/pb33f/libopenapi-validator/errors"

	"github.com/eventline/eventline/api"
)

var load = sync.OnceValues(func() (validator.Validator, error) {
	doc, err := libopenapi.NewDocument(api.YAML())
	if err != nil {
		return nil, fmt.Errorf("parse api/openapi.yaml: %w", err)
	}
	v, errs := validator.NewValidator(doc, config.WithFormatAssertions())
	if len(errs) > 0 {
		return nil, fmt.Errorf("api/openapi.yaml: %v", errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		return nil, fmt.Errorf("api/openapi.yaml is not a valid OpenAPI document: %s", describe(verrs))
	}
	return v, nil
})

// validators are not documented as safe for concurrent use; handlers are.
var mu sync.Mutex

// Validator returns the validator of the API description.
func Validator(t testing.TB) validator.Validator {
	t.Helper()
	v, err := load()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Check serves h and fails t on any exchange the API description does
// not describe. Requests answered 2xx are validated too; requests answered
// 4xx are the tests' deliberate mistakes, and their answers must be
// documented problems. A route the description lacks may only answer the
// problem+json 404 or 405 of an unknown route.
func Check(t testing.TB, h http.Handler) http.Handler {
	v := Validator(t)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		sent := r.Clone(r.Context()) // as the client sent it: handlers may rewrite r
		rec := &recorder{ResponseWriter: w, header: w.Header()}
		h.ServeHTTP(rec, r)
		if problem := Exchange(v, sent, body, rec.status(), w.Header(), rec.body.Bytes()); problem != "" {
			t.Errorf("%s %s answered %d, which api/openapi.yaml does not describe: %s", r.Method, r.URL.RequestURI(), rec.status(), problem)
		}
	})
}

// Exchange checks one request (with its body) and the answer to it; it
// returns what does not agree with the description, or "".
func Exchange(v validator.Validator, r *http.Request, reqBody []byte, status int, header http.Header, respBody []byte) string {
	mu.Lock()
	defer mu.Unlock()
	req := r.Clone(r.Context())
	req.Body = io.NopCloser(bytes.NewReader(reqBody))
	resp := &http.Response{StatusCode: status, Header: header, Body: io.NopCloser(bytes.NewReader(respBody)), Request: req}
	ct, _, _ := mime.ParseMediaType(header.Get("Content-Type"))

	_, verrs := v.ValidateHttpResponse(req, resp)
	if unknownRoute(verrs) {
		if (status == http.StatusNotFound || status == http.StatusMethodNotAllowed) && ct == "application/problem+json" {
			return ""
		}
		return "the route is not in the description: " + describe(verrs)
	}
	if len(verrs) > 0 {
		return describe(verrs)
	}
	if status >= 200 && status < 300 {
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
		if _, verrs := v.ValidateHttpRequestSync(req); len(verrs) > 0 {
			return "the handler accepted a request the description refuses: " + describe(verrs)
		}
	}
	if status >= 400 && ct != "application/problem+json" {
		return "an error answered " + ct + ", not application/problem+json"
	}
	return ""
}

func unknownRoute(verrs []*verrors.ValidationError) bool {
	for _, e := range verrs {
		if e.IsPathMissingError() || e.IsOperationMissingError() {
			return true
		}
	}
	return false
}

func describe(verrs []*verrors.ValidationError) string {
	var b strings.Builder
	for _, e := range verrs {
		fmt.Fprintf(&b, "\n  - %s: %s", e.Message, e.Reason)
		for _, s := range e.SchemaValidationErrors {
			fmt.Fprintf(&b, "\n      %s: %s", s.FieldPath, s.Reason)
		}
	}
	return b.String()
}

// recorder passes the response through and keeps a copy.
type recorder struct {
	http.ResponseWriter
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}

func (r *recorder) status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}

// Flush lets event streams through.
func (r *recorder) Flush() { _ = http.NewResponseController(r.ResponseWriter).Flush() }

// Unwrap gives http.ResponseController the writer underneath.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
