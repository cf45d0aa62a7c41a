package httpapi

import (
	"embed"
	"errors"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
)

//go:embed page
var common embed.FS

// Page serves a browser page built of embedded files, with no build step
// (the webhook portal, the operator console): root answers files'
// index.html and root + "/<name>" the file of that name. Every answer
// forbids inline scripts and loads from anywhere but this origin (CSP
// default-src 'self'), sends no Referer (the portal's token travels in the
// URL fragment, which is never sent, but the page's URL may still be
// private) and may be framed only by frameAncestors (a CSP source list:
// "'none'", "*", "https://app.example.com" ...). Files are revalidated on
// every load so a new binary's page is picked up at once. Every page also
// has root + "/common.js", the DOM helpers the pages share.
func Page(files fs.FS, root, frameAncestors string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, root), "/")
		if name == "" {
			name = "index.html"
		}
		if strings.Contains(name, "/") || strings.HasPrefix(name, ".") {
			NotFound().ServeHTTP(w, r)
			return
		}
		b, err := fs.ReadFile(files, name)
		if errors.Is(err, fs.ErrNotExist) {
			b, err = fs.ReadFile(common, "page/"+name)
		}
		if err != nil {
			NotFound().ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors "+frameAncestors+"; base-uri 'none'; form-action 'self'")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-cache")
		if ct := mime.TypeByExtension(path.Ext(name)); ct != "" {
			h.Set("Content-Type", ct)
		}
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(b) //nolint:gosec // G705: b is an embedded file of the binary, chosen by a name checked above, never request data
	})
}
