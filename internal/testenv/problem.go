package testenv

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
)

// RequireProblem sends method to url without credentials and fails the
// test unless the answer is status as application/problem+json with that
// status in its body, and, for 405, an Allow header equal to allow. Every
// service checks its router's 404 and 405 with it.
func RequireProblem(t testing.TB, method, url string, status int, allow string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("testenv: %s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var p struct {
		Status int `json:"status"`
	}
	switch {
	case resp.StatusCode != status:
		t.Fatalf("%s %s: status %d, want %d: %s", method, url, resp.StatusCode, status, body)
	case resp.Header.Get("Content-Type") != "application/problem+json":
		t.Fatalf("%s %s: Content-Type %q, want application/problem+json: %s", method, url, resp.Header.Get("Content-Type"), body)
	case json.Unmarshal(body, &p) != nil || p.Status != status:
		t.Fatalf("%s %s: not a problem body with status %d: %s", method, url, status, body)
	case status == http.StatusMethodNotAllowed && resp.Header.Get("Allow") != allow:
		t.Fatalf("%s %s: Allow %q, want %q", method, url, resp.Header.Get("Allow"), allow)
	}
}
