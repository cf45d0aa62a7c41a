// Command eventline is the operator CLI: migrate, keys (see `eventline help`).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/eventline/eventline/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
