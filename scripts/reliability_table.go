//go:build ignore

// reliability_table renders the rows of a `make reliability` run (a
// JSON-lines file) into the results section of RELIABILITY.md.
//
//	go run scripts/reliability_table.go reliability-results.jsonl RELIABILITY.md
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/eventline/eventline/internal/reliability"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: go run scripts/reliability_table.go RESULTS.jsonl RELIABILITY.md")
		os.Exit(2)
	}
	rows, err := reliability.ReadRows(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var table strings.Builder
	if err := reliability.Render(&table, rows); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	doc, err := os.ReadFile(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, err := reliability.Splice(string(doc), table.String())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := os.WriteFile(os.Args[2], []byte(out), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%s: %d rows from %s\n", os.Args[2], len(rows), os.Args[1])
}
