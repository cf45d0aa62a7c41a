package natsauth_test

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/notifier"
	"github.com/eventline/eventline/internal/projector"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/internal/webhooker"
)

// TestShippedConfigIsTheRendering: deploy/nats/auth.conf, which every
// shipped server configuration includes, is exactly what the code renders.
func TestShippedConfigIsTheRendering(t *testing.T) {
	t.Parallel()
	path, err := testenv.ShippedAuthConf()
	require.NoError(t, err)
	shipped, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, natsauth.Config{}.Conf(), string(shipped),
		"deploy/nats/auth.conf is out of date: go run ./cmd/eventline nats config > deploy/nats/auth.conf")
}

// TestDurablesAreTheServicesDefaults: the permissions name the durables
// the services read by default.
func TestDurablesAreTheServicesDefaults(t *testing.T) {
	t.Parallel()
	require.Equal(t, projector.DefaultConsumer, natsauth.ProjectorDurable)
	require.Equal(t, notifier.DefaultConsumer, natsauth.NotifierDurable)
	require.Equal(t, webhooker.DefaultConsumer, natsauth.WebhookerDurable)
}

func passwords(c natsauth.Config) map[string]string {
	out := map[string]string{}
	for _, name := range c.RenderedNames() {
		out[name] = "pw-" + name
	}
	return out
}

// user is what the server made of one configured user.
type user struct {
	account, password  string
	publish, subscribe []string
	responses          bool
}

func users(t *testing.T, opts *server.Options) map[string]user {
	t.Helper()
	out := map[string]user{}
	for _, u := range opts.Users {
		got := user{account: u.Account.Name, password: u.Password}
		if p := u.Permissions; p != nil {
			if p.Publish != nil {
				got.publish = p.Publish.Allow
				require.Empty(t, p.Publish.Deny, u.Username)
			}
			if p.Subscribe != nil {
				got.subscribe = p.Subscribe.Allow
				require.Empty(t, p.Subscribe.Deny, u.Username)
			}
			got.responses = p.Response != nil
		}
		out[u.Username] = got
	}
	return out
}

// TestServerOptionsAreTheIdentities: parsed by the server, the rendering
// has exactly the identities, in their accounts, with exactly their
// grants; EVENTLINE has JetStream and SYS is the system account.
func TestServerOptionsAreTheIdentities(t *testing.T) {
	t.Parallel()
	c := natsauth.Config{}
	c.Passwords = passwords(c)
	opts, err := c.ServerOptions()
	require.NoError(t, err)
	require.Equal(t, natsauth.AccountSystem, opts.SystemAccount)
	require.Nil(t, opts.AuthCallout, "no callout unless configured")
	got := users(t, opts)
	require.Len(t, got, len(c.Rendered()))
	for _, id := range c.Rendered() {
		u, ok := got[id.Name]
		require.True(t, ok, id.Name)
		require.Equal(t, user{account: id.Account, password: "pw-" + id.Name, publish: id.Allowed(natsauth.Publish), subscribe: id.Allowed(natsauth.Subscribe),
			responses: id.Responses}, u, id.Name)
	}
	var names []string
	for _, a := range opts.Accounts {
		names = append(names, a.Name)
	}
	require.ElementsMatch(t, []string{natsauth.AccountEventline, natsauth.AccountTenants, natsauth.AccountSystem}, names)

	// Every password must be given to the embedded server.
	_, err = natsauth.Config{}.ServerOptions()
	require.ErrorContains(t, err, "NATS_ADMIN_PASSWORD")
}

// TestCalloutRendering: with the callout, users auth (account AUTH) and
// sys (account SYS) exist, every static identity bypasses the callout,
// and the issuer and xkey are the configured ones.
func TestCalloutRendering(t *testing.T) {
	t.Parallel()
	akp, err := nkeys.CreateAccount()
	require.NoError(t, err)
	issuer, err := akp.PublicKey()
	require.NoError(t, err)
	xkp, err := nkeys.CreateCurveKeys()
	require.NoError(t, err)
	xkey, err := xkp.PublicKey()
	require.NoError(t, err)
	c := natsauth.Config{Callout: &natsauth.Callout{Issuer: issuer, XKey: xkey}}
	c.Passwords = passwords(c)
	opts, err := c.ServerOptions()
	require.NoError(t, err)
	require.NotNil(t, opts.AuthCallout)
	require.Equal(t, issuer, opts.AuthCallout.Issuer)
	require.Equal(t, xkey, opts.AuthCallout.XKey)
	require.Equal(t, natsauth.AccountAuth, opts.AuthCallout.Account)
	require.ElementsMatch(t, natsauth.Names(), opts.AuthCallout.AuthUsers)
	got := users(t, opts)
	require.Equal(t, natsauth.AccountAuth, got[natsauth.Auth].account)
	require.True(t, got[natsauth.Auth].responses, "the callout answers the server's requests")
	require.Equal(t, []string{"$SYS.REQ.USER.AUTH", "_INBOX_auth.>"}, got[natsauth.Auth].subscribe)
	require.Equal(t, natsauth.AccountSystem, got[natsauth.Sys].account)
}

// TestTenantGrants: a tenant publishes its own subjects and reads its own
// inbox; a tenant that is not one subject token is refused (it would
// widen the grant).
func TestTenantGrants(t *testing.T) {
	t.Parallel()
	g, err := natsauth.TenantGrants("acme")
	require.NoError(t, err)
	require.Equal(t, []natsauth.Grant{
		{Action: natsauth.Publish, Subject: "events.acme.>", Why: g[0].Why},
		{Action: natsauth.Subscribe, Subject: "_INBOX.acme.>", Why: g[1].Why},
	}, g)
	for _, bad := range []string{"", "a.b", "*", ">", "a b", "a\tb"} {
		_, err := natsauth.TenantGrants(bad)
		require.Error(t, err, "%q", bad)
	}
}

// TestEveryGrantSaysWhy: each subject an identity may use carries its
// reason, and no service identity may touch the whole API, other
// durables, or another inbox.
func TestEveryGrantSaysWhy(t *testing.T) {
	t.Parallel()
	for _, id := range natsauth.Identities() {
		require.NotEmpty(t, id.Role, id.Name)
		for _, g := range id.Grants {
			require.NotEmpty(t, g.Why, "%s %s %s", id.Name, g.Action, g.Subject)
		}
		if id.Name == natsauth.Admin {
			continue
		}
		for _, s := range id.Allowed(natsauth.Publish) {
			require.NotEqual(t, "$JS.API.>", s, id.Name)
			require.False(t, strings.HasPrefix(s, "$JS.API.STREAM.DELETE") || strings.HasPrefix(s, "$JS.API.STREAM.PURGE") ||
				strings.HasPrefix(s, "$JS.API.CONSUMER.CREATE") || strings.HasPrefix(s, "$JS.API.CONSUMER.DELETE"), "%s may %s", id.Name, s)
		}
		for _, s := range id.Allowed(natsauth.Subscribe) {
			if s == "$SYS.REQ.USER.AUTH" {
				continue
			}
			require.Equal(t, "_INBOX_"+id.Name+".>", s, "%s subscribes only to its own inbox", id.Name)
		}
	}
}

// TestHelmRenderingIsTheSame: the Helm values, turned into the server
// configuration the chart writes (JSON, with "<< X >>" unquoted), give
// the server the same users and permissions as the configuration file.
func TestHelmRenderingIsTheSame(t *testing.T) {
	t.Parallel()
	for _, c := range []natsauth.Config{{}, {StaticTenants: map[string]string{"a": "pa"}}} {
		conf := helmToConf(t, c)
		env := map[string]string{}
		for _, name := range c.RenderedNames() {
			env[natsauth.PasswordEnv(name)] = "pw-" + name
		}
		fromHelm := &server.Options{}
		require.NoError(t, fromHelm.ProcessConfigString(substitute(conf, env)), conf)
		c.Passwords = passwords(c)
		fromConf, err := c.ServerOptions()
		require.NoError(t, err)
		require.Equal(t, users(t, fromConf), users(t, fromHelm))
		require.Equal(t, fromConf.SystemAccount, fromHelm.SystemAccount)
	}
}

// helmToConf does what the NATS chart does with config.merge
// (nats.formatConfig): JSON without HTML escapes (toPrettyRawJson), where
// a string "<< X >>" is written as X.
func helmToConf(t *testing.T, c natsauth.Config) string {
	t.Helper()
	out, err := c.Helm()
	require.NoError(t, err)
	var tree map[string]any
	require.NoError(t, yaml.Unmarshal(out, &tree))
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	require.NoError(t, enc.Encode(tree))
	return regexp.MustCompile(`"<<\s+(.*?)\s+>>"`).ReplaceAllString(b.String(), "$1")
}

// substitute replaces $VAR references the way nats-server's environment
// lookup would, for a test that cannot set the process environment.
func substitute(conf string, env map[string]string) string {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return len(b) - len(a) })
	for _, k := range keys {
		conf = strings.ReplaceAll(conf, "$"+k, `"`+env[k]+`"`)
	}
	return conf
}
