package browser

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/eventline/eventline/internal/httpapi"
)

// The components are plain JavaScript custom elements, embedded in the
// binary: no Node and no build step to run them (docs/browser.md).
//
//go:embed components
var components embed.FS

// Components serves GET /components/<file> (eventline.js). Scripts may be
// loaded from any page, so the answer carries Access-Control-Allow-Origin
// *; it holds no data. An ETag lets browsers revalidate cheaply.
func Components() http.Handler {
	sub, _ := fs.Sub(components, "components")
	etags := map[string]string{}
	_ = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := fs.ReadFile(sub, p)
			sum := sha256.Sum256(b)
			etags[p] = `"` + hex.EncodeToString(sum[:8]) + `"`
		}
		return nil
	})
	files := http.FileServerFS(sub)
	return http.StripPrefix("/components", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
		etag, ok := etags[name]
		if !ok {
			httpapi.Error(w, http.StatusNotFound, "no such component file: "+r.URL.Path)
			return
		}
		h := w.Header()
		h.Set("ETag", etag)
		h.Set("Cache-Control", "public, max-age=300")
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("X-Content-Type-Options", "nosniff")
		if strings.HasSuffix(name, ".js") {
			h.Set("Content-Type", "text/javascript; charset=utf-8")
		}
		files.ServeHTTP(w, r)
	}))
}
