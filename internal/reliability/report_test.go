package reliability

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRenderAndSplice(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "r.jsonl")
	lines := `{"test":"TestA","fault":"a","acked":10,"models":[{"model":"timeline","lost":0,"duplicated":0},{"model":"webhook receiver","lost":1,"duplicated":0,"redelivered":3}],"recovery_seconds":1.25,"passed":false,"notes":["n1"]}
{"test":"TestB","fault":"b","acked":5,"models":[{"model":"timeline","lost":0,"duplicated":0}],"recovery_seconds":-1,"passed":true}
{"test":"TestA","fault":"a again","acked":11,"models":[{"model":"timeline","lost":0,"duplicated":0}],"recovery_seconds":2,"passed":true}
`
	require.NoError(t, os.WriteFile(path, []byte(lines), 0o600))
	rows, err := ReadRows(path)
	require.NoError(t, err)
	require.Len(t, rows, 2)
	require.Equal(t, "a again", rows[0].Fault, "the last row of a test wins, in first-seen order")

	var b strings.Builder
	require.NoError(t, Render(&b, rows))
	require.Contains(t, b.String(), "| a again | 11 | timeline 0 / 0 | 0 | 2.0 s | pass | `make reliability RUN='^TestA$'` |")
	require.Contains(t, b.String(), "| b | 5 | timeline 0 / 0 | 0 | never | pass |")

	require.Equal(t, "^TestN$/^latency$", runPattern("TestN/latency"))
	doc := "# R\n\n" + BeginMarker + "\nold\n" + EndMarker + "\ntail\n"
	out, err := Splice(doc, "new\n")
	require.NoError(t, err)
	require.Equal(t, "# R\n\n"+BeginMarker+"\nnew\n"+EndMarker+"\ntail\n", out)
	_, err = Splice("no markers", "x")
	require.Error(t, err)
}
