package testenv

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// FuzzCorpus reads the committed corpus of every fuzz target under dir
// (a package's testdata/fuzz) whose entries are one []byte or string, and
// returns them by "target/file". Entries of other shapes are skipped.
func FuzzCorpus(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	targets, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("testenv: read fuzz corpus: %v", err)
	}
	for _, target := range targets {
		files, err := os.ReadDir(filepath.Join(dir, target.Name()))
		if err != nil {
			t.Fatalf("testenv: read fuzz corpus: %v", err)
		}
		for _, f := range files {
			raw, err := os.ReadFile(filepath.Join(dir, target.Name(), f.Name()))
			if err != nil {
				t.Fatalf("testenv: read fuzz corpus: %v", err)
			}
			lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
			if len(lines) != 2 || lines[0] != "go test fuzz v1" {
				continue
			}
			lit, ok := strings.CutPrefix(lines[1], "[]byte(")
			if !ok {
				lit, ok = strings.CutPrefix(lines[1], "string(")
			}
			if !ok || !strings.HasSuffix(lit, ")") {
				continue
			}
			v, err := strconv.Unquote(strings.TrimSuffix(lit, ")"))
			if err != nil {
				t.Fatalf("testenv: corpus entry %s/%s: %v", target.Name(), f.Name(), err)
			}
			out[target.Name()+"/"+f.Name()] = []byte(v)
		}
	}
	return out
}
