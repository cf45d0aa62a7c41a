package natsauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/apikey"
	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/natsauth/callout"
	"github.com/eventline/eventline/internal/notifier"
	"github.com/eventline/eventline/internal/provision"
	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// outcome is what the server does with an action.
type outcome int

const (
	allowed outcome = iota + 1
	// refused: the server answers with a permissions violation.
	refused
	// deniedByStream: permitted, but the stream's own settings refuse it
	// (deny purge).
	deniedByStream
)

func (o outcome) String() string {
	return map[outcome]string{allowed: "allowed", refused: "refused", deniedByStream: "denied by the stream"}[o]
}

var durables = []string{natsauth.ProjectorDurable, natsauth.NotifierDurable, natsauth.WebhookerDurable}

// expect is the permission matrix: what each identity may do. Every action
// not listed for an identity must be refused by the server.
func expect(identity, action string) outcome {
	mayPublish := map[string][]string{
		natsauth.Admin:  {"publish events.a.x.y", "publish events.b.x.y", "publish events.a.webhook.disabled", "publish events.a.webhook.test", "publish events.a.webhook.attempt_failing", "publish events.a.webhook.attempt_exhausted", "publish events.a.webhook.recovered"},
		natsauth.Ingest: {"publish events.a.x.y", "publish events.b.x.y", "publish events.a.webhook.disabled", "publish events.a.webhook.test", "publish events.a.webhook.attempt_failing", "publish events.a.webhook.attempt_exhausted", "publish events.a.webhook.recovered"},
		// the webhooker records webhook.disabled, webhook.test and the
		// operational webhook events (docs/webhooks.md) in any tenant,
		// nothing else
		natsauth.Webhooker: {"publish events.a.webhook.disabled", "publish events.a.webhook.test", "publish events.a.webhook.attempt_failing", "publish events.a.webhook.attempt_exhausted", "publish events.a.webhook.recovered"},
		"tenant a":         {"publish events.a.x.y", "publish events.a.webhook.disabled", "publish events.a.webhook.test", "publish events.a.webhook.attempt_failing", "publish events.a.webhook.attempt_exhausted", "publish events.a.webhook.recovered"},
		"tenant b":         {"publish events.b.x.y"},
	}
	if slices.Contains(mayPublish[identity], action) {
		return allowed
	}
	switch identity {
	case natsauth.Admin:
		switch {
		case action == "purge the stream":
			return deniedByStream
		case strings.HasPrefix(action, "pull from "), strings.HasPrefix(action, "ack on "), strings.HasPrefix(action, "delete consumer "),
			action == "create a consumer", action == "delete the stream", action == "read stream info", action == "reply to its own inbox":
			return allowed
		}
	case natsauth.Ingest:
		switch action {
		case "read stream info", "reply to its own inbox":
			return allowed
		}
	case "tenant a", "tenant b":
		if action == "reply to its own inbox" { // its PubAcks
			return allowed
		}
	case natsauth.Projector, natsauth.Notifier, natsauth.Webhooker:
		switch action {
		case "read stream info", "reply to its own inbox", "pull from " + identity, "ack on " + identity:
			return allowed
		}
	}
	return refused
}

// actionsFor lists the matrix's columns for identity.
func actionsFor(identity string) []string {
	out := []string{"publish events.a.x.y", "publish events.b.x.y", "publish events.a.webhook.disabled", "publish events.a.webhook.test", "publish events.a.webhook.attempt_failing", "publish events.a.webhook.attempt_exhausted", "publish events.a.webhook.recovered", "subscribe events.>",
		"read stream info", "reply to its own inbox"}
	for _, d := range durables {
		out = append(out, "pull from "+d, "ack on "+d)
	}
	out = append(out, "create a consumer", "purge the stream")
	for _, other := range append(natsauth.Names(), "tenant a", "tenant b") {
		if other != identity {
			out = append(out, "subscribe to the inbox of "+other)
		}
	}
	// Destructive ones last: an identity allowed them (the admin) changes
	// what the next checks see.
	for _, d := range durables {
		out = append(out, "delete consumer "+d)
	}
	return append(out, "delete the stream")
}

// client is one identity's connection with the permission violations the
// server sent it.
type client struct {
	name       string
	nc         *nats.Conn
	violations chan string
}

func connectAs(t *testing.T, url string, name string, opts ...nats.Option) (*client, error) {
	c := &client{name: name, violations: make(chan string, 64)}
	all := append([]nats.Option{nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			c.violations <- err.Error()
		}
	})}, opts...)
	nc, err := nats.Connect(url, all...)
	if err != nil {
		return nil, err
	}
	t.Cleanup(nc.Close)
	c.nc = nc
	return c, nil
}

// refusal waits for the server's permissions violation naming what (e.g.
// `Publish to "$JS.API.STREAM.DELETE.EVENTS"`).
func (c *client) refusal(t *testing.T, what string) {
	t.Helper()
	want := "Permissions Violation for " + what
	timeout := time.After(10 * time.Second)
	for {
		select {
		case v := <-c.violations:
			if strings.Contains(v, want) {
				return
			}
			t.Fatalf("%s: unexpected violation %q while waiting for %q", c.name, v, want)
		case <-timeout:
			t.Fatalf("%s: the server sent no %q within 10s", c.name, want)
		}
	}
}

// noRefusal fails if the server refused anything since the last check.
func (c *client) noRefusal(t *testing.T) {
	t.Helper()
	require.NoError(t, c.nc.Flush())
	select {
	case v := <-c.violations:
		t.Fatalf("%s: refused: %s", c.name, v)
	default:
	}
}

// matrix runs every action of identity c against the provisioned stream on
// the server admin is connected to.
type matrix struct {
	admin *client
	js    jetstream.JetStream
	// inboxes by identity name, for the "other inbox" columns.
	inboxes map[string]string
}

func (m *matrix) run(t *testing.T, c *client, action string, want outcome) {
	t.Helper()
	ctx := context.Background()
	publish := func(subject string) {
		if want == allowed {
			js, err := jetstream.New(c.nc)
			require.NoError(t, err)
			msg := nats.NewMsg(subject)
			msg.Data = []byte(`{"matrix": true}`)
			ack, err := js.PublishMsg(ctx, msg, jetstream.WithExpectStream("EVENTS"))
			require.NoError(t, err, "%s: %s", c.name, action)
			require.Positive(t, ack.Sequence)
			c.noRefusal(t)
			return
		}
		require.NoError(t, c.nc.Publish(subject, []byte(`{"matrix": true}`)))
		c.refusal(t, fmt.Sprintf("Publish to %q", subject))
	}
	// request sends body to subject with a reply to c's inbox: allowed, it
	// returns the answer; refused, the server's violation.
	request := func(subject string, body []byte) *nats.Msg {
		if want == refused {
			require.NoError(t, c.nc.PublishRequest(subject, c.nc.NewInbox(), body))
			c.refusal(t, fmt.Sprintf("Publish to %q", subject))
			return nil
		}
		msg, err := c.nc.Request(subject, body, 10*time.Second)
		require.NoError(t, err, "%s: %s", c.name, action)
		c.noRefusal(t)
		return msg
	}
	apiError := func(msg *nats.Msg) *jetstream.APIError {
		var resp struct {
			Error *jetstream.APIError `json:"error"`
		}
		require.NoError(t, json.Unmarshal(msg.Data, &resp), "%s", msg.Data)
		return resp.Error
	}
	switch {
	case strings.HasPrefix(action, "publish "):
		publish(strings.TrimPrefix(action, "publish "))
	case action == "subscribe events.>":
		sub, err := c.nc.SubscribeSync("events.>")
		require.NoError(t, err)
		defer sub.Unsubscribe() //nolint:errcheck
		require.Equal(t, refused, want, "nobody may read every tenant")
		c.refusal(t, `Subscription to "events.>"`)
	case strings.HasPrefix(action, "subscribe to the inbox of "):
		subject := m.inboxes[strings.TrimPrefix(action, "subscribe to the inbox of ")] + ".>"
		sub, err := c.nc.SubscribeSync(subject)
		require.NoError(t, err)
		defer sub.Unsubscribe() //nolint:errcheck
		require.Equal(t, refused, want)
		c.refusal(t, fmt.Sprintf("Subscription to %q", subject))
	case action == "read stream info":
		if msg := request("$JS.API.STREAM.INFO.EVENTS", nil); msg != nil {
			require.Nil(t, apiError(msg), "%s", msg.Data)
		}
	case action == "reply to its own inbox":
		// The answer comes to a subscription on its own prefix: stream
		// info, or for a producer its PubAck.
		require.Equal(t, allowed, want)
		inbox := m.inboxes[c.name] + ".matrix"
		sub, err := c.nc.SubscribeSync(inbox)
		require.NoError(t, err)
		defer sub.Unsubscribe() //nolint:errcheck
		subject := "$JS.API.STREAM.INFO.EVENTS"
		if tenant, ok := strings.CutPrefix(c.name, "tenant "); ok {
			subject = "events." + tenant + ".inbox.checked"
		}
		require.NoError(t, c.nc.PublishRequest(subject, inbox, []byte(`{}`)))
		msg, err := sub.NextMsg(10 * time.Second)
		require.NoError(t, err, "%s: no answer in its own inbox", c.name)
		require.Nil(t, apiError(msg), "%s", msg.Data)
		c.noRefusal(t)
	case strings.HasPrefix(action, "pull from "):
		durable := strings.TrimPrefix(action, "pull from ")
		if msg := request("$JS.API.CONSUMER.MSG.NEXT.EVENTS."+durable, pullRequest(durable)); msg != nil {
			// A message, or a status saying there is none: either way the
			// durable answered its puller.
			require.True(t, msg.Subject != "" && (len(msg.Data) > 0 || msg.Header.Get("Status") != ""), "%s pulled %+v", c.name, msg)
		}
	case strings.HasPrefix(action, "ack on "):
		durable := strings.TrimPrefix(action, "ack on ")
		// A message the admin pulled: its reply is the real ack subject. The
		// notifier's durable stays pinned to whoever pulled last: release it.
		if durable == natsauth.NotifierDurable {
			str, err := m.js.Stream(ctx, "EVENTS")
			require.NoError(t, err)
			require.NoError(t, str.UnpinConsumer(ctx, durable, notifier.PriorityGroup))
		}
		msg, err := m.admin.nc.Request("$JS.API.CONSUMER.MSG.NEXT.EVENTS."+durable, pullRequest(durable), 10*time.Second)
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(msg.Reply, "$JS.ACK.EVENTS."+durable+"."), "a pulled message from %s: %q %s", durable, msg.Reply, msg.Header)
		request(msg.Reply, []byte("+ACK")) // the server confirms an ack sent with a reply
	case action == "create a consumer":
		body := []byte(`{"stream_name": "EVENTS", "config": {"durable_name": "intruder", "ack_policy": "explicit", "filter_subject": "events.>"}}`)
		if msg := request("$JS.API.CONSUMER.CREATE.EVENTS.intruder.events.>", body); msg != nil {
			require.Nil(t, apiError(msg), "%s", msg.Data)
			require.NoError(t, m.js.DeleteConsumer(ctx, "EVENTS", "intruder"))
		}
	case action == "purge the stream":
		if msg := request("$JS.API.STREAM.PURGE.EVENTS", nil); msg != nil {
			require.Equal(t, deniedByStream, want)
			require.NotNil(t, apiError(msg), "deny purge refuses even the admin: %s", msg.Data)
		}
	case strings.HasPrefix(action, "delete consumer "):
		durable := strings.TrimPrefix(action, "delete consumer ")
		if msg := request("$JS.API.CONSUMER.DELETE.EVENTS."+durable, nil); msg != nil {
			require.Nil(t, apiError(msg), "%s", msg.Data)
		}
		_, err := m.js.Consumer(ctx, "EVENTS", durable)
		if want == allowed {
			require.ErrorIs(t, err, jetstream.ErrConsumerNotFound)
		} else {
			require.NoError(t, err, "%s's refused delete left durable %s alone", c.name, durable)
		}
	case action == "delete the stream":
		if msg := request("$JS.API.STREAM.DELETE.EVENTS", nil); msg != nil {
			require.Nil(t, apiError(msg), "%s", msg.Data)
		}
		_, err := m.js.Stream(ctx, "EVENTS")
		if want == allowed {
			require.ErrorIs(t, err, jetstream.ErrStreamNotFound)
		} else {
			require.NoError(t, err, "%s's refused delete left the stream alone", c.name)
		}
	default:
		t.Fatalf("no check for action %q", action)
	}
}

// provisioned starts the server process with the shipped identities (or
// rendered from auth), provisions the stream and durables as the admin and
// appends messages for the pull and ack checks.
func provisioned(t *testing.T, cfg testenv.NATSConfig) (*testenv.NATSProcess, *matrix) {
	t.Helper()
	ctx := context.Background()
	p := testenv.StartNATSProcessWith(t, cfg)
	admin, err := connectAs(t, p.URL(), natsauth.Admin, nats.UserInfo(natsauth.Admin, p.Passwords[natsauth.Admin]),
		nats.CustomInboxPrefix(stream.InboxPrefix(natsauth.Admin)))
	require.NoError(t, err)
	_, err = provision.Run(ctx, admin.nc, provision.Config{})
	require.NoError(t, err)
	js, err := jetstream.New(admin.nc)
	require.NoError(t, err)
	for i := range 200 {
		_, err := js.Publish(ctx, fmt.Sprintf("events.seed.card.m%d", i), []byte(`{}`))
		require.NoError(t, err)
	}
	inboxes := map[string]string{"tenant a": natsauth.TenantInboxPrefix("a"), "tenant b": natsauth.TenantInboxPrefix("b")}
	for _, name := range natsauth.Names() {
		inboxes[name] = stream.InboxPrefix(name)
	}
	return p, &matrix{admin: admin, js: js, inboxes: inboxes}
}

// TestPermissionMatrix starts a real nats-server (v2.15.2 process) with the
// shipped configuration, deploy/nats/auth.conf, provisions as the admin,
// and has every identity try every action: allowed exactly where the
// matrix says, refused by the server (its permissions violation, not a
// timeout) everywhere else. The refused destructive actions leave the
// stream and the durables in place.
func TestPermissionMatrix(t *testing.T) {
	t.Parallel()
	p, m := provisioned(t, testenv.NATSConfig{})
	url := p.URL()

	// No credentials, or a wrong password: no connection at all.
	_, err := nats.Connect(url)
	require.ErrorIs(t, err, nats.ErrAuthorization, "an anonymous client")
	_, err = nats.Connect(url, nats.UserInfo(natsauth.Ingest, "not-the-password"))
	require.ErrorIs(t, err, nats.ErrAuthorization, "a wrong password")

	rows := []string{natsauth.Ingest, natsauth.Projector, natsauth.Notifier, natsauth.Webhooker, natsauth.Admin} // admin last: it deletes
	for _, identity := range rows {
		c, err := connectAs(t, url, identity, nats.UserInfo(identity, p.Passwords[identity]), nats.CustomInboxPrefix(stream.InboxPrefix(identity)))
		require.NoError(t, err, identity)
		for _, action := range actionsFor(identity) {
			want := expect(identity, action)
			t.Run(identity+"/"+action+"="+want.String(), func(t *testing.T) { m.run(t, c, action, want) })
		}
	}
}

// calloutServer starts the server process with the auth callout
// configured and eventline's responder (and its revocation sweep) serving
// it, authenticating API keys from a fresh database; it returns the keys
// of tenant producers a and b.
func calloutServer(t *testing.T) (*testenv.NATSProcess, *matrix, map[string]string, *apikey.Store) {
	t.Helper()
	ctx := context.Background()
	issuer, err := nkeys.CreateAccount()
	require.NoError(t, err)
	pub, err := issuer.PublicKey()
	require.NoError(t, err)
	p, m := provisioned(t, testenv.NATSConfig{Auth: &natsauth.Config{Callout: &natsauth.Callout{Issuer: pub}}})
	store := apikey.NewStore(testenv.Pool(t), 0)
	keys := map[string]string{}
	for _, tenant := range []string{"a", "b"} {
		_, plain, err := store.Create(ctx, apikey.CreateParams{Tenant: tenant, Scopes: []string{apikey.ScopeIngest}})
		require.NoError(t, err)
		keys[tenant] = plain
	}
	r, err := callout.New(callout.Config{Issuer: issuer, Keys: store, SweepEvery: 200 * time.Millisecond})
	require.NoError(t, err)
	authConn, err := nats.Connect(p.URL(), nats.UserInfo(natsauth.Auth, p.Passwords[natsauth.Auth]), nats.CustomInboxPrefix(stream.InboxPrefix(natsauth.Auth)))
	require.NoError(t, err)
	sysConn, err := nats.Connect(p.URL(), nats.UserInfo(natsauth.Sys, p.Passwords[natsauth.Sys]), nats.CustomInboxPrefix(stream.InboxPrefix(natsauth.Sys)))
	require.NoError(t, err)
	stop, err := r.Listen(authConn)
	require.NoError(t, err)
	cctx, cancel := context.WithCancel(ctx)
	go r.Sweep(cctx, sysConn, store.Revoked)
	t.Cleanup(func() { cancel(); _ = stop(); authConn.Close(); sysConn.Close() })
	return p, m, keys, store
}

// tenantProducer connects as a producer with an eventline API key, through
// the auth callout.
func tenantProducer(t *testing.T, p *testenv.NATSProcess, key, tenant string, opts ...nats.Option) (*client, error) {
	t.Helper()
	return connectAs(t, p.URL(), "tenant "+tenant, append([]nats.Option{nats.Token(key), nats.CustomInboxPrefix(natsauth.TenantInboxPrefix(tenant))}, opts...)...)
}

// TestPermissionMatrixTenants: the rows of the tenant producers (A and B),
// authenticated by their eventline API keys through the real auth callout
// and placed in account TENANTS with the tenant permission template.
func TestPermissionMatrixTenants(t *testing.T) {
	t.Parallel()
	p, m, keys, _ := calloutServer(t)
	for _, tenant := range []string{"a", "b"} {
		c, err := tenantProducer(t, p, keys[tenant], tenant)
		require.NoError(t, err)
		name := "tenant " + tenant
		for _, action := range actionsFor(name) {
			want := expect(name, action)
			t.Run(name+"/"+action+"="+want.String(), func(t *testing.T) { m.run(t, c, action, want) })
		}
	}
}

// TestCalloutRefusesAndRevokes: a wrong key, a key without the ingest
// scope and no key are refused; revoking a key closes its open
// connections (the sweep) and refuses new ones.
func TestCalloutRefusesAndRevokes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, _, keys, store := calloutServer(t)

	_, err := nats.Connect(p.URL(), nats.Token(keys["a"][:len(keys["a"])-2]+"xx"))
	require.ErrorIs(t, err, nats.ErrAuthorization, "a wrong key")
	_, err = nats.Connect(p.URL())
	require.ErrorIs(t, err, nats.ErrAuthorization, "no key")
	readKey, readPlain, err := store.Create(ctx, apikey.CreateParams{Tenant: "a", Scopes: []string{apikey.ScopeRead}})
	require.NoError(t, err)
	_, err = nats.Connect(p.URL(), nats.Token(readPlain))
	require.ErrorIs(t, err, nats.ErrAuthorization, "a key without the ingest scope (%s)", readKey.ID)

	c, err := tenantProducer(t, p, keys["a"], "a", nats.NoReconnect())
	require.NoError(t, err)
	js, err := jetstream.New(c.nc)
	require.NoError(t, err)
	_, err = js.Publish(ctx, "events.a.card.published", []byte(`{}`))
	require.NoError(t, err, "a producer publishes its tenant's events and gets the PubAck")

	key, err := store.Authenticate(ctx, keys["a"])
	require.NoError(t, err)
	require.NoError(t, store.Revoke(ctx, key.ID))
	testenv.Poll(t, 30*time.Second, "the revoked key's connection is closed", c.nc.IsClosed)
	_, err = nats.Connect(p.URL(), nats.Token(keys["a"]))
	require.ErrorIs(t, err, nats.ErrAuthorization, "a revoked key")

	other, err := tenantProducer(t, p, keys["b"], "b")
	require.NoError(t, err)
	require.True(t, other.nc.IsConnected(), "another key's connection stays")
}

// advisories collects the server's JetStream API audit advisories (the
// admin may watch them): each says which API subject it served and what it
// answered.
type advisories struct {
	mu  sync.Mutex
	got []struct{ Subject, Response string }
}

func watchAPI(t *testing.T, admin *nats.Conn) *advisories {
	t.Helper()
	a := &advisories{}
	sub, err := admin.Subscribe("$JS.EVENT.ADVISORY.API", func(msg *nats.Msg) {
		var adv struct{ Subject, Response string }
		if json.Unmarshal(msg.Data, &adv) == nil {
			a.mu.Lock()
			a.got = append(a.got, adv)
			a.mu.Unlock()
		}
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	require.NoError(t, admin.Flush())
	return a
}

func (a *advisories) served(subject string) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, adv := range a.got {
		if adv.Subject == subject {
			return adv.Response, true
		}
	}
	return "", false
}

// TestReplySubjectCannotActForTheClient: a client that may publish events
// names a JetStream API subject as its message's reply, so that the
// server itself sends the PubAck there. The server does serve those
// "requests" (its API advisories show it), and refuses every one: the
// stream, its messages and the durables survive.
func TestReplySubjectCannotActForTheClient(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, m := provisioned(t, testenv.NATSConfig{})
	api := watchAPI(t, m.admin.nc)
	before, err := m.js.Stream(ctx, "EVENTS")
	require.NoError(t, err)
	msgs := before.CachedInfo().State.Msgs

	ingest, err := connectAs(t, p.URL(), natsauth.Ingest, nats.UserInfo(natsauth.Ingest, p.Passwords[natsauth.Ingest]),
		nats.CustomInboxPrefix(stream.InboxPrefix(natsauth.Ingest)))
	require.NoError(t, err)
	targets := []string{"$JS.API.STREAM.DELETE.EVENTS", "$JS.API.CONSUMER.DELETE.EVENTS." + natsauth.ProjectorDurable,
		"$JS.API.STREAM.PURGE.EVENTS", "$JS.API.STREAM.MSG.DELETE.EVENTS"}
	for _, reply := range targets {
		require.NoError(t, ingest.nc.PublishMsg(&nats.Msg{Subject: "events.a.card.closed", Reply: reply, Data: []byte(`{}`)}))
	}
	ingest.noRefusal(t)
	for _, target := range targets {
		testenv.Poll(t, 10*time.Second, "the server served the PubAck sent to "+target, func() bool { _, ok := api.served(target); return ok })
		resp, _ := api.served(target)
		require.Contains(t, resp, `"error"`, "%s answered %s", target, resp)
	}
	after, err := m.js.Stream(ctx, "EVENTS")
	require.NoError(t, err, "the stream survives")
	require.Equal(t, msgs+uint64(len(targets)), after.CachedInfo().State.Msgs, "nothing deleted or purged; the four messages stored")
	for _, d := range durables {
		_, err := m.js.Consumer(ctx, "EVENTS", d)
		require.NoError(t, err, "durable %s survives", d)
	}
}

// TestTenantReplyCannotWriteToAnotherTenant: a tenant producer names
// another tenant's subject as its reply. Producers publish through a
// service import, so the server gives their messages a reply subject of
// its own and sends the PubAck back to the producer's account, where it
// reaches no stream: nothing lands on the other tenant's subjects. (Within
// the stream's account the PubAck would be stored there.)
func TestTenantReplyCannotWriteToAnotherTenant(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, m, keys, _ := calloutServer(t)
	a, err := tenantProducer(t, p, keys["a"], "a")
	require.NoError(t, err)
	require.NoError(t, a.nc.PublishMsg(&nats.Msg{Subject: "events.a.card.closed", Reply: "events.b.card.closed", Data: []byte(`{}`)}))
	// Two more appends, each waiting for its PubAck. The stream sends its
	// PubAcks in order from one loop: by the second PubAck the first
	// message's PubAck has been routed, and anything it caused to be
	// stored is queued before the third message, which would then not
	// follow the second directly.
	js, err := jetstream.New(a.nc)
	require.NoError(t, err)
	second, err := js.Publish(ctx, "events.a.card.closed", []byte(`{}`))
	require.NoError(t, err)
	third, err := js.Publish(ctx, "events.a.card.closed", []byte(`{}`))
	require.NoError(t, err)
	a.noRefusal(t)
	require.Equal(t, second.Sequence+1, third.Sequence, "nothing was stored between the two appends")
	str, err := m.js.Stream(ctx, "EVENTS")
	require.NoError(t, err)
	info, err := str.Info(ctx, jetstream.WithSubjectFilter("events.b.>"))
	require.NoError(t, err)
	require.Empty(t, info.State.Subjects, "nothing was stored on tenant b's subjects")
	require.Equal(t, third.Sequence, info.State.LastSeq)
}

// pullRequest asks durable for one message without waiting; the
// notifier's durable is pinned to one client of its priority group, and
// answers only pulls that name the group.
func pullRequest(durable string) []byte {
	if durable == natsauth.NotifierDurable {
		return []byte(`{"batch": 1, "no_wait": true, "group": "` + notifier.PriorityGroup + `"}`)
	}
	return []byte(`{"batch": 1, "no_wait": true}`)
}
