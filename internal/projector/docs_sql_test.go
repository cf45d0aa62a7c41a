package projector

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/testenv"
)

// sqlDocs is the page whose SQL TestSQLDocs runs.
const sqlDocs = "../../docs/sql.md"

// docBlock is one fenced code block of a markdown page.
type docBlock struct {
	line int    // of the opening fence, 1-based
	info string // "sql", "sql admin", "text", ...
	body string
	// expected is the text block that directly follows a sql block (only
	// blank lines between): the output that block must print.
	expected *string
}

// codeBlocks returns the fenced blocks of a markdown file in order.
func codeBlocks(t *testing.T, path string) []docBlock {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var (
		blocks     []docBlock
		cur        *docBlock
		body       []string
		onlyBlanks = false // since the previous block closed
	)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			info := strings.TrimSpace(strings.TrimPrefix(line, "```"))
			cur, body = &docBlock{line: n, info: info}, nil
			if info == "text" && onlyBlanks && len(blocks) > 0 && strings.HasPrefix(blocks[len(blocks)-1].info, "sql") {
				cur.info = "expected"
			}
		case cur != nil && line == "```":
			cur.body = strings.Join(body, "\n")
			if cur.info == "expected" {
				blocks[len(blocks)-1].expected = &cur.body
			} else {
				blocks = append(blocks, *cur)
			}
			cur, onlyBlanks = nil, true
		case cur != nil:
			body = append(body, line)
		default:
			onlyBlanks = onlyBlanks && strings.TrimSpace(line) == ""
		}
	}
	require.NoError(t, sc.Err())
	require.Nil(t, cur, "%s: unterminated code block", path)
	return blocks
}

var (
	createRole = regexp.MustCompile(`(?i)CREATE ROLE (\w+)`)
	grantRole  = regexp.MustCompile(`(?i)GRANT (eventline_\w+) TO (\w+)`)
)

// TestSQLDocs runs every SQL block of docs/sql.md against a database
// holding sampleEvents: "sql admin" blocks as the owner (the roles they
// create get test-unique names), "sql" blocks in one session of the login
// granted eventline_reader, "sql analyst" blocks in one of the login
// granted eventline_analyst, each in the order of the page. Every block
// must answer rows (or consist of SET commands), and where the page shows
// the output (a text block right after), print exactly that, as psql
// does; an output starting with "ERROR:" means the block must fail so.
func TestSQLDocs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	owner := testenv.Pool(t)
	seedGeneration(t, owner, 1, sampleEvents())
	blocks := codeBlocks(t, sqlDocs)

	logins := map[string]string{} // eventline_reader / eventline_analyst -> login
	sessions := map[string]*pgx.Conn{}
	session := func(granted string) *pgx.Conn {
		if c, ok := sessions[granted]; ok {
			return c
		}
		login, ok := logins[granted]
		require.True(t, ok, "%s: no admin block before grants %s to a login", sqlDocs, granted)
		c, err := connectAs(t, owner, login, nil).Acquire(ctx)
		require.NoError(t, err)
		t.Cleanup(c.Release)
		sessions[granted] = c.Conn()
		return c.Conn()
	}
	ran := map[string]int{}
	for _, b := range blocks {
		kind, ok := strings.CutPrefix(b.info, "sql")
		if !ok {
			continue
		}
		where := fmt.Sprintf("%s:%d", sqlDocs, b.line)
		var conn *pgx.Conn
		release := func() {}
		sql := b.body
		switch strings.TrimSpace(kind) {
		case "admin":
			for _, m := range createRole.FindAllStringSubmatch(sql, -1) {
				name := fmt.Sprintf("el_test_%s_%s", m[1], randomSuffix())
				sql = regexp.MustCompile(`\b`+m[1]+`\b`).ReplaceAllString(sql, name)
				dropRoleAtEnd(t, owner, name)
			}
			for _, m := range grantRole.FindAllStringSubmatch(sql, -1) {
				logins[m[1]] = m[2]
			}
			c, err := owner.Acquire(ctx)
			require.NoError(t, err)
			conn, release = c.Conn(), c.Release
		case "":
			conn = session("eventline_reader")
		case "analyst":
			conn = session("eventline_analyst")
		default:
			t.Fatalf("%s: unknown block kind %q (want sql, sql admin or sql analyst)", where, b.info)
		}
		ran[strings.TrimSpace(kind)]++
		results, err := conn.PgConn().Exec(ctx, sql).ReadAll()
		release()
		if b.expected != nil && strings.HasPrefix(*b.expected, "ERROR:") {
			require.Error(t, err, "%s: the page shows an error", where)
			require.Equal(t, *b.expected, renderError(err), "%s: the error printed", where)
			continue
		}
		require.NoError(t, err, "%s", where)
		last := results[len(results)-1]
		if !last.CommandTag.Select() {
			for _, r := range results {
				require.True(t, r.CommandTag.String() == "SET" || strings.TrimSpace(kind) == "admin",
					"%s: a block that returns no rows must only SET (got %s)", where, r.CommandTag)
			}
			require.Nil(t, b.expected, "%s: the page shows output for a block that prints none", where)
			continue
		}
		require.NotEmpty(t, last.Rows, "%s: the example answers no rows", where)
		if b.expected != nil {
			require.Equal(t, trimLines(*b.expected), trimLines(renderAligned(last)), "%s: the output printed", where)
		}
	}
	require.Positive(t, ran["admin"], "admin blocks")
	require.GreaterOrEqual(t, ran[""], 4, "reader examples")
	require.Positive(t, ran["analyst"], "analyst examples")
}

func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// renderError prints err as psql does at its default verbosity, without
// the CONTEXT line.
func renderError(err error) string {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err.Error()
	}
	s := "ERROR:  " + pgErr.Message
	if pgErr.Detail != "" {
		s += "\nDETAIL:  " + pgErr.Detail
	}
	if pgErr.Hint != "" {
		s += "\nHINT:  " + pgErr.Hint
	}
	return s
}

// rightAligned are the types psql aligns to the right: numbers.
var rightAligned = map[uint32]bool{20: true, 21: true, 23: true, 26: true, 700: true, 701: true, 790: true, 1700: true}

// renderAligned prints r as psql's default (aligned) format does: headers
// centred, numbers right-aligned, "(N rows)" below.
func renderAligned(r *pgconn.Result) string {
	fields := r.FieldDescriptions
	widths := make([]int, len(fields))
	for i, f := range fields {
		widths[i] = utf8.RuneCountInString(f.Name)
	}
	for _, row := range r.Rows {
		for i, v := range row {
			widths[i] = max(widths[i], utf8.RuneCountInString(string(v)))
		}
	}
	var sb strings.Builder
	cells := make([]string, len(fields))
	for i, f := range fields {
		pad := widths[i] - utf8.RuneCountInString(f.Name)
		cells[i] = strings.Repeat(" ", pad/2) + f.Name + strings.Repeat(" ", pad-pad/2)
	}
	sb.WriteString(" " + strings.Join(cells, " | ") + "\n")
	for i := range fields {
		cells[i] = strings.Repeat("-", widths[i]+2)
	}
	sb.WriteString(strings.Join(cells, "+") + "\n")
	for _, row := range r.Rows {
		for i, v := range row {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(string(v)))
			if rightAligned[fields[i].DataTypeOID] {
				cells[i] = pad + string(v)
			} else {
				cells[i] = string(v) + pad
			}
		}
		sb.WriteString(" " + strings.Join(cells, " | ") + "\n")
	}
	if len(r.Rows) == 1 {
		sb.WriteString("(1 row)")
	} else {
		fmt.Fprintf(&sb, "(%d rows)", len(r.Rows))
	}
	return sb.String()
}

// trimLines drops trailing spaces, which psql prints after some last
// columns and a page cannot show.
func trimLines(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n")
}
