package projector

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/eventline/eventline/internal/testenv"
)

var parentsSeeds = []string{
	`[]`,
	`[{"id": "b1", "type": "board"}]`,
	`[{"id": "b1", "type": "board"}, {"id": "a1", "type": "account"}]`,
	`[{"id": "Zoë's card", "type": "card"}]`,
	`[{"id": "c\"q\\", "type": "card"}]`,
	`[{"id": "\u2028", "type": "card"}]`,
	`[{"type":"board","id":"b1"}]`,
	`[{"id": "b1", "type": "board"},]`,
	`[{"id": "b1", "type": "board"}`,
	`[{"id": "b1", "type": "board", "x": 1}]`,
	"[{\"id\": \"\xff\", \"type\": \"board\"}]",
	`null`,
}

// checkParents holds decodeParents to encoding/json: the same refs, or
// an error for both.
func checkParents(t *testing.T, b []byte) (direct bool) {
	t.Helper()
	var want []struct {
		Type string `json:"type"`
		ID   string `json:"id"`
	}
	wantErr := json.Unmarshal(b, &want)
	got, err := decodeParents(b)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("decodeParents(%q): error %v, encoding/json %v", b, err, wantErr)
	}
	if wantErr != nil {
		return false
	}
	if len(got) != len(want) {
		t.Fatalf("decodeParents(%q) = %+v, encoding/json %+v", b, got, want)
	}
	for i := range got {
		if got[i].Type != want[i].Type || got[i].ID != want[i].ID {
			t.Fatalf("decodeParents(%q) = %+v, encoding/json %+v", b, got, want)
		}
	}
	if refs, ok := scanParents(b); ok && !reflect.DeepEqual(refs, got) {
		t.Fatalf("scanParents and decodeParents disagree on %q", b)
	}
	_, direct = scanParents(b)
	return direct
}

func TestDecodeParentsMatchesJSON(t *testing.T) {
	direct := 0
	for _, s := range parentsSeeds {
		if checkParents(t, []byte(s)) {
			direct++
		}
	}
	if direct != 4 {
		t.Fatalf("%d seeds read directly, want 4 ([], one, two, non-ASCII)", direct)
	}
}

func FuzzDecodeParents(f *testing.F) {
	for _, s := range parentsSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkParents(t, b) })
}

// TestPostgresParentsAreReadDirectly requires that Postgres writes a jsonb
// array of refs in the form scanParents reads, so the direct reading does
// not silently stop applying.
func TestPostgresParentsAreReadDirectly(t *testing.T) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testenv.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, in := range []string{`[]`, `[{"type":"board","id":"b1"}]`, `[{"type":"board","id":"b1"},{"type":"account","id":"Zoë"}]`} {
		var b []byte
		if err := conn.QueryRow(ctx, "SELECT $1::jsonb", in).Scan(&b); err != nil {
			t.Fatal(err)
		}
		if _, ok := scanParents(b); !ok {
			t.Errorf("Postgres wrote %s as %q, which scanParents does not read", in, b)
		}
	}
}
