package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/eventline/eventline/internal/observe"
)

// Listening records where a service listens, once it does.
type Listening struct {
	mu      sync.Mutex
	api     net.Addr
	admin   net.Addr
	routes  []string
	started chan struct{}
}

// NewListening returns a Listening that is not started.
func NewListening() *Listening { return &Listening{started: make(chan struct{})} }

// Started is closed once the service listens; Addr and AdminAddr are set.
func (l *Listening) Started() <-chan struct{} { return l.started }

// Addr is the bound public API address.
func (l *Listening) Addr() net.Addr { l.mu.Lock(); defer l.mu.Unlock(); return l.api }

// AdminAddr is the bound admin address.
func (l *Listening) AdminAddr() net.Addr { l.mu.Lock(); defer l.mu.Unlock(); return l.admin }

// Routes are the patterns the public API serves, when its handler is an
// httpapi.Mux (nil otherwise).
func (l *Listening) Routes() []string { l.mu.Lock(); defer l.mu.Unlock(); return l.routes }

func (l *Listening) set(api, admin net.Addr, routes []string) {
	l.mu.Lock()
	l.api, l.admin, l.routes = api, admin, routes
	l.mu.Unlock()
	close(l.started)
}

// Server is what every eventline service serves: a public API and the
// admin endpoints.
type Server struct {
	Name            string // for logs, e.g. "ingest"
	HTTPAddr        string
	Handler         http.Handler
	Admin           *observe.Admin
	ShutdownTimeout time.Duration // default 30s
	Log             *slog.Logger
	Listening       *Listening
	// OnShutdown, when set, runs as the API server starts shutting down:
	// it ends long-lived responses (event streams) that would otherwise
	// hold the drain until ShutdownTimeout.
	OnShutdown func()
}

// Serve listens on the API and admin addresses and runs work (the
// service's own loops) until ctx ends, work fails or a listener fails.
// Then it drains in this order: /readyz turns 503, the API stops accepting
// and waits for in-flight requests, work's context is cancelled and work
// is waited for, and the admin server stops. A clean drain returns nil.
func Serve(ctx context.Context, s Server, work func(context.Context) error) error {
	if s.ShutdownTimeout <= 0 {
		s.ShutdownTimeout = 30 * time.Second
	}
	adminL, err := s.Admin.Listen(ctx)
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", s.HTTPAddr)
	if err != nil {
		_ = adminL.Close()
		return fmt.Errorf("listen on %s: %w", s.HTTPAddr, err)
	}
	srv := &http.Server{Handler: s.Handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
	if s.OnShutdown != nil {
		srv.RegisterOnShutdown(s.OnShutdown)
	}

	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	workDone := make(chan error, 1)
	go func() { workDone <- work(workCtx) }()
	errc := make(chan error, 2)
	go func() { errc <- s.Admin.Serve(adminL) }()
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http server: %w", err)
		}
	}()
	s.Log.Info(s.Name+" started", "http_addr", l.Addr().String(), "admin_addr", adminL.Addr().String())
	if s.Listening != nil {
		var routes []string
		if m, ok := s.Handler.(interface{ Patterns() []string }); ok {
			routes = m.Patterns()
		}
		s.Listening.set(l.Addr(), adminL.Addr(), routes)
	}

	var runErr error
	workEnded := false
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	case runErr = <-workDone:
		workEnded = true
		if runErr == nil {
			runErr = errors.New(s.Name + " stopped unexpectedly")
		}
	}
	s.Log.Info(s.Name + " draining")
	s.Admin.SetDraining()
	sctx, cancel := context.WithTimeout(context.Background(), s.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("http shutdown: %w", err))
	}
	stopWork()
	if !workEnded {
		select {
		case err := <-workDone:
			runErr = errors.Join(runErr, err)
		case <-sctx.Done():
			runErr = errors.Join(runErr, fmt.Errorf("%s did not finish its work within %s", s.Name, s.ShutdownTimeout))
		}
	}
	_ = s.Admin.Shutdown(sctx)
	s.Log.Info(s.Name + " stopped")
	return runErr
}
