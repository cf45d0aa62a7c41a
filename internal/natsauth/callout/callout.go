// Package callout is eventline's NATS auth callout (docs/security.md,
// docs/publishing-from-any-language.md): a tenant producer connects to NATS
// with an eventline API key as its token, the server asks the callout,
// and the callout answers with a user in account TENANTS that may publish
// only its tenant's events and receive its PubAcks
// (natsauth.TenantGrants). One key and one revocation serve HTTP and NATS.
//
// A revoked key's connections are closed by the sweep: every SweepEvery
// the callout lists the connections of account TENANTS on every server and
// kicks those whose key no longer authenticates, so revocation takes
// effect on NATS within the same 30 s as on HTTP (the key cache's TTL plus
// one sweep).
package callout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/natsauth"
)

// Subject is where the server sends authorization requests.
const Subject = "$SYS.REQ.USER.AUTH"

// queue lets several ingest replicas share the requests.
const queue = "eventline-callout"

// userPrefix starts the name of every user the callout issues, followed by
// the API key id; connz reports it as the connection's authorized user,
// and the sweep finds each connection's key by it.
const userPrefix = "eventline-key:"

// Keys authenticates API keys (apikey.Store).
type Keys interface {
	Authenticate(ctx context.Context, plaintext string) (apikey.Key, error)
}

// Config configures a Responder.
type Config struct {
	// Issuer is the account key pair (seed SA...) whose public key the
	// server's auth_callout names as issuer.
	Issuer nkeys.KeyPair
	// Keys authenticates the tokens producers present.
	Keys Keys
	// UserTTL is how long an issued user is valid; default 1 hour. A
	// connection outliving it re-authenticates (clients reconnect).
	UserTTL time.Duration
	// SweepEvery is how often the sweep looks for revoked keys; default 10s.
	SweepEvery time.Duration
	Log        *slog.Logger
}

// Responder answers the server's authorization requests.
type Responder struct {
	cfg Config
}

// New returns a Responder.
func New(cfg Config) (*Responder, error) {
	if cfg.Issuer == nil {
		return nil, errors.New("callout: no issuer key")
	}
	if pub, err := cfg.Issuer.PublicKey(); err != nil || !nkeys.IsValidPublicAccountKey(pub) {
		return nil, errors.New("callout: the issuer must be an account key (seed SA..., public A...)")
	}
	if cfg.UserTTL <= 0 {
		cfg.UserTTL = time.Hour
	}
	if cfg.SweepEvery <= 0 {
		cfg.SweepEvery = 10 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Responder{cfg: cfg}, nil
}

// ParseIssuer reads an account seed (SA...), as `eventline nats
// callout-keys` prints it.
func ParseIssuer(seed string) (nkeys.KeyPair, error) {
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(seed)))
	if err != nil {
		return nil, fmt.Errorf("callout issuer seed: %w", err)
	}
	if pub, err := kp.PublicKey(); err != nil || !nkeys.IsValidPublicAccountKey(pub) {
		return nil, errors.New("callout issuer seed: not an account seed (SA...)")
	}
	return kp, nil
}

// Listen starts answering requests on nc (connected as identity auth):
// when it returns, the subscription is in place. stop drains it.
func (r *Responder) Listen(nc *nats.Conn) (stop func() error, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	sub, err := nc.QueueSubscribe(Subject, queue, func(m *nats.Msg) { r.handle(ctx, m) })
	if err != nil {
		cancel()
		return nil, fmt.Errorf("callout: subscribe %s: %w", Subject, err)
	}
	if err := nc.Flush(); err != nil {
		cancel()
		return nil, fmt.Errorf("callout: %w", err)
	}
	return func() error { defer cancel(); return sub.Drain() }, nil
}

func (r *Responder) handle(ctx context.Context, m *nats.Msg) {
	req, err := jwt.DecodeAuthorizationRequestClaims(string(m.Data))
	if err != nil {
		r.cfg.Log.Warn("callout: undecodable authorization request", "error", err)
		return
	}
	userJWT, reason := r.authorize(ctx, req)
	resp := jwt.NewAuthorizationResponseClaims(req.UserNkey)
	resp.Audience = req.Server.ID
	if reason != "" {
		resp.Error = reason
	} else {
		resp.Jwt = userJWT
	}
	token, err := resp.Encode(r.cfg.Issuer)
	if err != nil {
		r.cfg.Log.Error("callout: encode the response", "error", err)
		return
	}
	if err := m.Respond([]byte(token)); err != nil {
		r.cfg.Log.Warn("callout: respond", "error", err)
	}
}

// authorize returns the user JWT for the request, or why it is refused
// (the server logs the reason; the client sees "Authorization Violation").
func (r *Responder) authorize(ctx context.Context, req *jwt.AuthorizationRequestClaims) (string, string) {
	secret := req.ConnectOptions.Token
	if secret == "" {
		secret = req.ConnectOptions.Password // user = anything, password = the key
	}
	if secret == "" {
		return "", "no eventline API key: connect with the key as the token"
	}
	actx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	key, err := r.cfg.Keys.Authenticate(actx, secret)
	if errors.Is(err, apikey.ErrInvalid) {
		return "", "the API key is not valid: unknown, revoked or mistyped"
	}
	if err != nil {
		r.cfg.Log.Warn("callout: key lookup failed", "error", err)
		return "", "eventline could not check the key right now; retry"
	}
	if !key.Allows(apikey.ScopeIngest) {
		return "", "the API key lacks the ingest scope"
	}
	grants, err := natsauth.TenantGrants(key.Tenant)
	if err != nil {
		return "", err.Error()
	}
	uc := jwt.NewUserClaims(req.UserNkey)
	uc.Name = userPrefix + key.ID
	uc.Audience = natsauth.AccountTenants
	uc.Expires = time.Now().Add(r.cfg.UserTTL).Unix()
	for _, g := range grants {
		switch g.Action {
		case natsauth.Publish:
			uc.Pub.Allow.Add(g.Subject)
		case natsauth.Subscribe:
			uc.Sub.Allow.Add(g.Subject)
		}
	}
	token, err := uc.Encode(r.cfg.Issuer)
	if err != nil {
		return "", "eventline could not issue the user"
	}
	return token, ""
}

// Sweep kicks, every SweepEvery until ctx ends, the connections of
// account TENANTS whose API key no longer authenticates. sys is connected
// as identity sys.
func (r *Responder) Sweep(ctx context.Context, sys *nats.Conn, revoked func(ctx context.Context, keyID string) (bool, error)) {
	t := time.NewTicker(r.cfg.SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := r.sweepOnce(ctx, sys, revoked); err != nil && ctx.Err() == nil {
				r.cfg.Log.Warn("callout: revocation sweep failed", "error", err)
			}
		}
	}
}

type connzResponse struct {
	Server struct {
		ID string `json:"id"`
	} `json:"server"`
	Data struct {
		Conns []struct {
			CID  uint64 `json:"cid"`
			User string `json:"authorized_user"`
		} `json:"connections"`
	} `json:"data"`
}

// sweepOnce asks every server for the connections of TENANTS and kicks
// the revoked ones.
func (r *Responder) sweepOnce(ctx context.Context, sys *nats.Conn, revoked func(context.Context, string) (bool, error)) error {
	inbox := sys.NewRespInbox()
	sub, err := sys.SubscribeSync(inbox)
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	opts, _ := json.Marshal(map[string]any{"acc": natsauth.AccountTenants, "auth": true, "limit": 100000})
	if err := sys.PublishRequest("$SYS.REQ.SERVER.PING.CONNZ", inbox, opts); err != nil {
		return err
	}
	checked := map[string]bool{}
	deadline := time.Now().Add(time.Second)
	for {
		m, err := sub.NextMsg(time.Until(deadline))
		if errors.Is(err, nats.ErrTimeout) {
			return nil
		}
		if err != nil {
			return err
		}
		var resp connzResponse
		if err := json.Unmarshal(m.Data, &resp); err != nil {
			return fmt.Errorf("connz answer: %w", err)
		}
		for _, c := range resp.Data.Conns {
			id, ok := strings.CutPrefix(c.User, userPrefix)
			if !ok {
				continue
			}
			gone, seen := checked[id]
			if !seen {
				if gone, err = revoked(ctx, id); err != nil {
					return err
				}
				checked[id] = gone
			}
			if gone {
				req, _ := json.Marshal(map[string]uint64{"cid": c.CID})
				if _, err := sys.Request(fmt.Sprintf("$SYS.REQ.SERVER.%s.KICK", resp.Server.ID), req, 2*time.Second); err != nil {
					r.cfg.Log.Warn("callout: kick a revoked key's connection", "key", id, "error", err)
					continue
				}
				r.cfg.Log.Info("callout: closed a connection of a revoked key", "key", id, "cid", c.CID)
			}
		}
	}
}
