package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/eventline/eventline/internal/deadletter"
	"github.com/eventline/eventline/internal/projector"
	"github.com/eventline/eventline/internal/replay"
)

func dlq(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay") {
		return usageError{"dlq: say list or replay"}
	}
	var dbURL, consumer string
	var all bool
	set := flags("dlq "+args[0], &dbURL)
	def := ""
	if args[0] == "replay" {
		def = projector.DefaultConsumer
	}
	set.String(&consumer, "consumer", "EVENTLINE_CONSUMER", def, "the consumer whose dead letters to use")
	if args[0] == "list" {
		set.Bool(&all, "all", "EVENTLINE_DLQ_ALL", false, "include letters already replayed")
	}
	if err := parse(set, args[1:]); err != nil {
		return err
	}
	if consumer != "" && !replay.Known(consumer) {
		return usageError{fmt.Sprintf("dlq %s: no consumer %q; use one of %s", args[0], consumer, strings.Join(replay.Consumers(), ", "))}
	}
	pool, err := openMigrated(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if args[0] == "list" {
		letters, err := deadletter.NewStore(pool).List(ctx, deadletter.ListParams{Consumer: consumer, IncludeReplayed: all, Limit: 1000})
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CONSUMER\tSEQ\tSUBJECT\tFAILURES\tFAILED AT\tREPLAYED\tERROR")
		for _, l := range letters {
			replayed := "-"
			if l.ReplayedAt != nil {
				replayed = l.ReplayedAt.UTC().Format("2006-01-02T15:04:05Z")
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\t%s\n", l.Consumer, l.StreamSeq, l.Subject, l.Failures,
				l.FailedAt.UTC().Format("2006-01-02T15:04:05Z"), replayed, clip(l.Error, 120))
		}
		return tw.Flush()
	}
	if !replay.Known(consumer) {
		return usageError{fmt.Sprintf("dlq replay: no replay for consumer %q", consumer)}
	}
	store := deadletter.NewStore(pool)
	var letters []deadletter.Letter
	if rest := set.FlagSet().Args(); len(rest) > 0 {
		for _, a := range rest {
			seq, err := strconv.ParseUint(a, 10, 64)
			if err != nil {
				return usageError{fmt.Sprintf("dlq replay: %q is not a stream sequence", a)}
			}
			l, err := store.Get(ctx, consumer, seq)
			if err != nil {
				return err
			}
			letters = append(letters, l)
		}
	} else if letters, err = store.List(ctx, deadletter.ListParams{Consumer: consumer, Limit: 100000}); err != nil {
		return err
	}
	var failed int
	for _, l := range letters {
		poison, err := replay.Letter(ctx, pool, l)
		if err != nil {
			return err
		}
		if poison != nil {
			failed++
			fmt.Fprintf(stdout, "seq %d: still failing: %s\n", l.StreamSeq, clip(poison.Error(), 200))
		} else {
			fmt.Fprintf(stdout, "seq %d: replayed\n", l.StreamSeq)
		}
	}
	fmt.Fprintf(stdout, "%d replayed, %d still failing\n", len(letters)-failed, failed)
	if failed > 0 {
		return fmt.Errorf("%d dead letters still fail", failed)
	}
	return nil
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
