package cli_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/cli"
)

// TestEveryCommandAnswersHelp walks every command and subcommand the CLI
// registers: each answers -h and --help with its usage on stdout and exit
// 0, without touching the database (DATABASE_URL points nowhere), and is
// described in the top-level usage.
func TestEveryCommandAnswersHelp(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://127.0.0.1:1/nowhere?connect_timeout=1")
	paths := cli.Commands()
	require.NotEmpty(t, paths)
	subs := map[string][]string{}
	for _, p := range paths {
		if len(p) == 2 {
			subs[p[0]] = append(subs[p[0]], p[1])
		}
	}

	var top, topErr bytes.Buffer
	require.Equal(t, 0, cli.Run(context.Background(), []string{"--help"}, &top, &topErr))
	for _, p := range paths {
		name := "eventline " + strings.Join(p, " ")
		if len(subs[p[0]]) > 0 && len(p) == 1 {
			continue // a group is described by its subcommands' entries
		}
		require.Contains(t, top.String(), "  "+name+" ", "the top-level usage describes %q", name)
	}

	for _, p := range paths {
		name := "eventline " + strings.Join(p, " ")
		for _, h := range []string{"--help", "-h"} {
			args := append(append([]string{}, p...), h)
			var out, errOut bytes.Buffer
			code := cli.Run(context.Background(), args, &out, &errOut)
			require.Equal(t, 0, code, "%v: %s", args, errOut.String())
			require.Empty(t, errOut.String(), "%v", args)
			require.Contains(t, out.String(), "Usage:", "%v", args)
			require.Contains(t, out.String(), name, "%v: the usage names the command", args)
			for _, s := range subs[p[0]] {
				if len(p) == 1 {
					require.Contains(t, out.String(), name+" "+s, "%v: a group's usage lists its subcommands", args)
				}
			}
		}
	}
}

// A group without a subcommand, or with one it does not have, is a usage
// error naming the subcommands it has.
func TestGroupNeedsAKnownSubcommand(t *testing.T) {
	for _, args := range [][]string{{"keys"}, {"keys", "frobnicate"}, {"dlq", "--consumer", "projector"}} {
		var out, errOut bytes.Buffer
		require.Equal(t, 2, cli.Run(context.Background(), args, &out, &errOut), "%v", args)
		require.Empty(t, out.String(), "%v", args)
		require.Contains(t, errOut.String(), " or ", "%v: %s", args, errOut.String())
	}
}
