package dev_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/testenv"
)

// tourBlock is one ```sh block of the README's tour: the script and the
// lines its output must contain (its "# expect:" comments).
type tourBlock struct {
	script  string
	expects []string
}

var fence = regexp.MustCompile("(?s)```sh\n(.*?)```")

// readmeTour returns the sh blocks of the README section "A ten-minute tour".
func readmeTour(t *testing.T) []tourBlock {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "README.md"))
	require.NoError(t, err)
	text := string(b)
	start := strings.Index(text, "\n## A ten-minute tour")
	require.GreaterOrEqual(t, start, 0, "README.md has no section \"## A ten-minute tour\"")
	section := text[start+1:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	var blocks []tourBlock
	for _, m := range fence.FindAllStringSubmatch(section, -1) {
		var tb tourBlock
		for line := range strings.SplitSeq(m[1], "\n") {
			if e, ok := strings.CutPrefix(strings.TrimSpace(line), "# expect:"); ok {
				tb.expects = append(tb.expects, strings.TrimSpace(e))
				continue
			}
			tb.script += line + "\n"
		}
		blocks = append(blocks, tb)
	}
	require.GreaterOrEqual(t, len(blocks), 5, "the tour has too few sh blocks to be a tour")
	return blocks
}

// TestReadmeTour runs every shell block of the README's tour, in order,
// against `eventline dev` and checks each "# expect:" line, so the README
// cannot drift from what eventline does. The first block (which exports
// the address and key) is checked to name them and replaced by the
// environment. Blocks that write (POST) run once; blocks that read are
// retried until their expectations hold, since the read models are
// eventually consistent.
func TestReadmeTour(t *testing.T) {
	if _, err := exec.LookPath("psql"); err != nil {
		t.Fatal("the README tour runs psql: install the PostgreSQL client (Debian: apt-get install postgresql-client)")
	}
	blocks := readmeTour(t)
	db := testenv.Database(t)
	p := startDev(t, t.TempDir(), db)
	defer p.stop(t)

	env := append(os.Environ(), "EVENTLINE="+p.url, "KEY="+p.key, "DATABASE_URL="+db)
	run := func(script string) (string, error) {
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
		cmd.Env = env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	missing := func(out string, expects []string) []string {
		var m []string
		for _, e := range expects {
			if !strings.Contains(out, e) {
				m = append(m, e)
			}
		}
		return m
	}

	require.Contains(t, blocks[0].script, "export EVENTLINE=", "the tour's first block sets the address")
	require.Contains(t, blocks[0].script, "KEY=", "the tour's first block sets the key")
	for i, b := range blocks[1:] {
		name := fmt.Sprintf("block %d:\n%s", i+2, b.script)
		if strings.Contains(b.script, "-X POST") {
			out, err := run(b.script)
			require.NoError(t, err, "%s\noutput:\n%s", name, out)
			require.Empty(t, missing(out, b.expects), "%s\noutput:\n%s", name, out)
			if strings.Contains(b.script, "/v1/webhooks") {
				waitForEndpoint(t, p)
			}
			continue
		}
		// A read is run again until its expectations hold: at most every
		// 100 ms (each run starts bash, curl and psql), at once when a run
		// took longer.
		deadline := time.NewTimer(30 * time.Second)
		tick := time.NewTicker(100 * time.Millisecond)
		for {
			out, err := run(b.script)
			if err == nil && len(missing(out, b.expects)) == 0 {
				break
			}
			select {
			case <-deadline.C:
				t.Fatalf("%s\nerror: %v\nmissing %q in output:\n%s", name, err, missing(out, b.expects), out)
			case <-tick.C:
			}
		}
		tick.Stop()
		deadline.Stop()
	}
}

// waitForEndpoint posts probe events (on a board of their own, by a user of
// their own) until one reaches the dev sink: from then on the webhooker
// matches the endpoint the tour just created, so the tour's events cannot
// be fanned out before it knows the endpoint. A probe appended before the
// webhooker knew the endpoint never reaches it, so while none has arrived
// another is posted every second; any of them arriving will do.
func waitForEndpoint(t *testing.T, p *devProcess) {
	t.Helper()
	var probes []string
	var posted time.Time
	testenv.Poll(t, 30*time.Second, "a probe event reaches the tour's webhook endpoint", func() bool {
		if time.Since(posted) >= time.Second {
			id := fmt.Sprintf("tour-probe-%d", len(probes)+1)
			status, body := p.do(t, "POST", "/v1/events", `{"id":"`+id+`","action":"published","eventable":{"type":"card","id":"`+id+`"},`+
				`"creator":{"type":"user","id":"tour-probe"},"parents":[{"type":"board","id":"tour-probe"}]}`)
			require.Equal(t, 202, status, "%s", body)
			probes = append(probes, id)
			posted = time.Now()
		}
		_, got := p.do(t, "GET", "/dev/webhook-sink", "")
		for _, id := range probes {
			if bytes.Contains(got, []byte(`"webhook_id":"`+id+`"`)) {
				return true
			}
		}
		return false
	})
}
