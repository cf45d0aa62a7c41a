package doccheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPublishingExampleIsTheTestedCode: the Node.js example of
// docs/publishing-from-any-language.md is e2e/publish.mjs, the code the
// producer test runs in Chromium's harness (make test-browser).
func TestPublishingExampleIsTheTestedCode(t *testing.T) {
	root := filepath.Join("..", "..")
	doc, err := os.ReadFile(filepath.Join(root, "docs", "publishing-from-any-language.md"))
	if err != nil {
		t.Fatal(err)
	}
	code, err := os.ReadFile(filepath.Join(root, "e2e", "publish.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```js\n"+string(code)+"```") {
		t.Fatal("docs/publishing-from-any-language.md does not show e2e/publish.mjs as it is: copy the file into the doc's first js block")
	}
}
