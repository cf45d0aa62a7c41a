package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/internal/deadletter"
	"github.com/eventline/eventline/internal/replay"
)

// rejected lists the messages that failed validation (each once, whichever
// consumers rejected it) and replays them after a fix: every consumer's
// dead letter of the message is processed again, and once none is
// pending the rejection is marked replayed (docs/rejections.md).
func rejected(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay") {
		return usageError{"rejected: say list or replay"}
	}
	var dbURL, tenant string
	var all bool
	set := flags("rejected "+args[0], &dbURL)
	set.String(&tenant, "tenant", "EVENTLINE_TENANT", "", "only this tenant's rejections")
	if args[0] == "list" {
		set.Bool(&all, "all", "EVENTLINE_REJECTED_ALL", false, "include rejections already replayed")
	}
	if err := parse(set, args[1:]); err != nil {
		return err
	}
	var seqs []int64
	for _, a := range set.FlagSet().Args() {
		seq, err := strconv.ParseInt(a, 10, 64)
		if err != nil || seq <= 0 || args[0] == "list" {
			return usageError{fmt.Sprintf("rejected %s: %q is not a stream sequence", args[0], a)}
		}
		seqs = append(seqs, seq)
	}
	pool, err := openMigrated(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	store := deadletter.NewStore(pool)
	if args[0] == "list" {
		rs, err := store.Rejections(ctx, deadletter.RejectionsParams{Tenant: tenant, IncludeReplayed: all, Limit: 1000})
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ\tTENANT\tSUBJECT\tID\tSTREAM TIME\tREPLAYED\tERRORS")
		for _, r := range rs {
			id, replayed := "-", "-"
			if r.ID != nil {
				id = *r.ID
			}
			if r.ReplayedAt != nil {
				replayed = r.ReplayedAt.Format("2006-01-02T15:04:05Z")
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Seq, or(r.Tenant, "-"), clip(r.Subject, 80), id,
				r.StreamTime.Format("2006-01-02T15:04:05Z"), replayed, clip(summary(r), 120))
		}
		return tw.Flush()
	}

	rs, err := store.Rejections(ctx, deadletter.RejectionsParams{Tenant: tenant, Seqs: seqs, IncludeReplayed: len(seqs) > 0, Limit: 100000})
	if err != nil {
		return err
	}
	if len(seqs) > 0 && len(rs) < len(seqs) {
		found := map[uint64]bool{}
		for _, r := range rs {
			found[r.Seq] = true
		}
		for _, s := range seqs {
			if !found[uint64(s)] {
				return fmt.Errorf("no rejection at stream sequence %d (of tenant %q)", s, tenant)
			}
		}
	}
	var failed int
	for _, r := range rs {
		ok, err := replayRejection(ctx, pool, store, r, stdout)
		if err != nil {
			return err
		}
		if !ok {
			failed++
		}
	}
	fmt.Fprintf(stdout, "%d replayed, %d still rejected\n", len(rs)-failed, failed)
	if failed > 0 {
		return fmt.Errorf("%d rejections still fail", failed)
	}
	return nil
}

// replayRejection replays every pending dead letter of r's message, and
// reports whether the rejection is now replayed.
func replayRejection(ctx context.Context, pool *pgxpool.Pool, store *deadletter.Store, r deadletter.Rejection, stdout io.Writer) (bool, error) {
	letters, err := store.LettersOf(ctx, r.Seq, false)
	if err != nil {
		return false, err
	}
	if len(letters) == 0 {
		kept, err := store.LettersOf(ctx, r.Seq, true)
		if err != nil {
			return false, err
		}
		if len(kept) == 0 {
			fmt.Fprintf(stdout, "seq %d: still rejected: no consumer's dead letter of it is kept, nothing to replay\n", r.Seq)
			return false, nil
		}
	}
	var consumers, problems []string
	for _, l := range letters {
		if _, ok := replay.For(l.Consumer); !ok {
			problems = append(problems, fmt.Sprintf("%s: no replay for this consumer", l.Consumer))
			continue
		}
		poison, err := replay.Letter(ctx, pool, l)
		if err != nil {
			return false, err
		}
		if poison != nil {
			problems = append(problems, fmt.Sprintf("%s: %s", l.Consumer, clip(poison.Error(), 200)))
			continue
		}
		consumers = append(consumers, l.Consumer)
	}
	if len(problems) > 0 {
		fmt.Fprintf(stdout, "seq %d: still rejected: %s\n", r.Seq, strings.Join(problems, "; "))
		return false, nil
	}
	// Each replay marked the rejection once no other letter was pending;
	// this covers a rejection whose letters were all replayed before.
	if _, err := deadletter.MarkRejectionReplayed(ctx, pool, r.Seq); err != nil {
		return false, err
	}
	switch {
	case len(consumers) > 0:
		fmt.Fprintf(stdout, "seq %d: replayed (%s)\n", r.Seq, strings.Join(consumers, ", "))
	case r.ReplayedAt != nil:
		fmt.Fprintf(stdout, "seq %d: already replayed\n", r.Seq)
	default:
		fmt.Fprintf(stdout, "seq %d: replayed (every consumer's dead letter of it was replayed before)\n", r.Seq)
	}
	return true, nil
}

// summary is the first field error of r and how many more there are.
func summary(r deadletter.Rejection) string {
	if len(r.Errors) == 0 {
		return ""
	}
	s := r.Errors[0].Field + ": " + r.Errors[0].Message
	if n := len(r.Errors) - 1; n > 0 {
		s += fmt.Sprintf(" (+%d more)", n)
	}
	return s
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
