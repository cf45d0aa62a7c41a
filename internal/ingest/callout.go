package ingest

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/config"
	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/natsauth/callout"
	"github.com/eventline/eventline/internal/stream"
)

// CalloutConfig turns on the NATS auth callout in ingest: tenant producers
// connect to NATS with their API key (docs/publishing-from-any-language.md).
type CalloutConfig struct {
	// IssuerSeed is the account seed (SA...) `eventline nats callout-keys`
	// made; the server's configuration names its public key. Empty: off.
	IssuerSeed string
	// AuthPassword and SysPassword are the passwords of the identities auth
	// (answers the server) and sys (the revocation sweep), which connect to
	// the same servers as ingest (NATS_URL, TLS).
	AuthPassword, SysPassword string
}

// Register binds the settings to flags and environment variables.
func (c *CalloutConfig) Register(s *config.Set) {
	s.String(&c.IssuerSeed, "nats-callout-issuer-seed", "NATS_CALLOUT_ISSUER_SEED", "", "account seed (SA...) that signs the NATS auth callout's answers; set it to let tenant producers connect with API keys")
	s.String(&c.AuthPassword, "nats-auth-password", natsauth.PasswordEnv(natsauth.Auth), "", "password of the NATS identity auth (the callout), with the callout")
	s.String(&c.SysPassword, "nats-sys-password", natsauth.PasswordEnv(natsauth.Sys), "", "password of the NATS identity sys (the callout's revocation sweep), with the callout")
}

// startCallout connects as auth and sys and serves the callout until ctx
// ends; the returned stop waits for it.
func startCallout(ctx context.Context, c CalloutConfig, nc stream.Client, keys *apikey.Store, log *slog.Logger) (stop func(), err error) {
	issuer, err := callout.ParseIssuer(c.IssuerSeed)
	if err != nil {
		return nil, err
	}
	r, err := callout.New(callout.Config{Issuer: issuer, Keys: keys, Log: log})
	if err != nil {
		return nil, err
	}
	as := func(identity, password string) stream.Client {
		cl := nc
		cl.Creds, cl.NKey, cl.Token = "", "", ""
		cl.User, cl.Password = identity, password
		return cl
	}
	authNC, err := stream.Connect(as(natsauth.Auth, c.AuthPassword), natsauth.Auth, "eventline-callout", log)
	if err != nil {
		return nil, fmt.Errorf("nats auth callout: %w", err)
	}
	sysNC, err := stream.Connect(as(natsauth.Sys, c.SysPassword), natsauth.Sys, "eventline-callout-sweep", log)
	if err != nil {
		authNC.Close()
		return nil, fmt.Errorf("nats auth callout sweep: %w", err)
	}
	drain, err := r.Listen(authNC)
	if err != nil {
		authNC.Close()
		sysNC.Close()
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		r.Sweep(sctx, sysNC, func(ctx context.Context, id string) (bool, error) {
			active, err := keys.Active(ctx, id)
			return !active, err
		})
	}()
	log.Info("nats auth callout serving: tenant producers connect with their API keys")
	return func() {
		cancel()
		<-swept
		_ = drain()
		authNC.Close()
		sysNC.Close()
	}, nil
}
