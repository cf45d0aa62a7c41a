package natsauth

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"go.yaml.in/yaml/v3"
)

// Config says how to render the identities.
type Config struct {
	// Passwords by identity name. An identity without one gets a reference
	// to the environment variable PasswordEnv(name), which nats-server
	// substitutes when it reads its configuration: the shipped files are
	// rendered that way, the embedded server with literal passwords.
	Passwords map[string]string
	// Callout, when set, sends every connection that is not a static
	// identity to the auth callout, and adds its users auth and sys.
	Callout *Callout
	// StaticTenants are tenant producers with a password (tenant ->
	// password), users "tenant-<tenant>" in account TENANTS with the
	// tenant permissions: for tests and local experiments. Production
	// producers authenticate through the callout.
	StaticTenants map[string]string
}

// Callout configures the auth callout.
type Callout struct {
	// Issuer is the public account nkey (A...) whose private key signs the
	// callout's answers.
	Issuer string
	// XKey, when set, is the public curve key (X...) the server encrypts
	// its requests to the callout with.
	XKey string
}

// PasswordEnv is the environment variable that holds identity's password
// in the shipped server configurations, e.g. NATS_INGEST_PASSWORD.
func PasswordEnv(identity string) string { return "NATS_" + strings.ToUpper(identity) + "_PASSWORD" }

// StaticTenantUser is the user name of a static tenant producer.
func StaticTenantUser(tenant string) string { return "tenant-" + tenant }

// Rendered returns the identities this configuration renders: without the
// callout, those that exist without it.
func (c Config) Rendered() []Identity {
	var out []Identity
	for _, id := range Identities() {
		if !id.Callout || c.Callout != nil {
			out = append(out, id)
		}
	}
	return out
}

// RenderedNames lists the names of Rendered.
func (c Config) RenderedNames() []string {
	var out []string
	for _, id := range c.Rendered() {
		out = append(out, id.Name)
	}
	return out
}

// PasswordEnvs lists the environment variables the rendering refers to.
func (c Config) PasswordEnvs() []string {
	var out []string
	for _, id := range c.Rendered() {
		if _, ok := c.Passwords[id.Name]; !ok {
			out = append(out, PasswordEnv(id.Name))
		}
	}
	return out
}

// The rendering goes through a small ordered tree, written out as nats
// configuration or as YAML (the Helm chart's config.merge).
type (
	field struct {
		key, comment string
		val          any // string (quoted), raw, []item, tree
	}
	tree []field
	item struct {
		comment string
		val     any
	}
	// raw is written unquoted: identifiers, "enabled", environment
	// variable references ($VAR).
	raw string
)

func (c Config) password(identity string) any {
	if p, ok := c.Passwords[identity]; ok {
		return p
	}
	return raw("$" + PasswordEnv(identity))
}

func user(name string, pass any, comment string, grants []Grant, responses bool) item {
	perms := tree{}
	for _, a := range []Action{Publish, Subscribe} {
		var allow []item
		for _, g := range grants {
			if g.Action == a {
				allow = append(allow, item{comment: g.Why, val: g.Subject})
			}
		}
		if len(allow) > 0 {
			perms = append(perms, field{key: string(a), val: tree{{key: "allow", val: allow}}})
		}
	}
	if responses {
		perms = append(perms, field{key: "allow_responses", val: raw("true")})
	}
	return item{comment: comment, val: tree{{key: "user", val: raw(name)}, {key: "password", val: pass}, {key: "permissions", val: perms}}}
}

func (c Config) tree() tree {
	users := map[string][]item{}
	for _, id := range c.Rendered() {
		users[id.Account] = append(users[id.Account], user(id.Name, c.password(id.Name), id.Role, id.Grants, id.Responses))
	}
	tenants := make([]string, 0, len(c.StaticTenants))
	for t := range c.StaticTenants {
		tenants = append(tenants, t)
	}
	sort.Strings(tenants)
	for _, t := range tenants {
		grants, err := TenantGrants(t)
		if err != nil {
			panic(err) // a test's own tenant names
		}
		users[AccountTenants] = append(users[AccountTenants], user(StaticTenantUser(t), c.StaticTenants[t], "static tenant producer (tests)", grants, false))
	}
	accounts := tree{}
	for _, name := range []string{AccountEventline, AccountTenants, AccountAuth, AccountSystem} {
		acc := tree{}
		switch name {
		case AccountEventline:
			acc = append(acc, field{key: "jetstream", val: raw("enabled")})
		case AccountAuth:
			if c.Callout == nil {
				continue
			}
		}
		if u := users[name]; len(u) > 0 {
			acc = append(acc, field{key: "users", val: u})
		}
		switch name {
		case AccountEventline:
			acc = append(acc, field{key: "exports", comment: "tenant producers publish through this service import: the server gives their publishes a reply subject of its own",
				val: []item{{val: tree{{key: "service", val: "events.>"}, {key: "accounts", val: []item{{val: raw(AccountTenants)}}}}}}})
		case AccountTenants:
			acc = append(acc, field{key: "imports", val: []item{{val: tree{{key: "service", val: tree{{key: "account", val: raw(AccountEventline)}, {key: "subject", val: "events.>"}}}}}}})
		}
		accounts = append(accounts, field{key: name, val: acc})
	}
	t := tree{{key: "accounts", val: accounts}, {key: "system_account", val: raw(AccountSystem)}}
	if c.Callout != nil {
		var authUsers []item
		for _, id := range c.Rendered() {
			authUsers = append(authUsers, item{val: raw(id.Name)})
		}
		callout := tree{{key: "issuer", val: c.Callout.Issuer}, {key: "account", val: raw(AccountAuth)},
			{key: "auth_users", comment: "static identities bypass the callout", val: authUsers}}
		if c.Callout.XKey != "" {
			callout = append(callout, field{key: "xkey", val: c.Callout.XKey})
		}
		t = append(t, field{key: "authorization", val: tree{{key: "auth_callout", val: callout}}})
	}
	return t
}

// Conf renders the configuration as a nats-server configuration fragment
// (accounts, system account, auth callout) to include in a server's
// configuration.
func (c Config) Conf() string {
	var b strings.Builder
	b.WriteString("# eventline's NATS accounts, identities and permissions, generated from\n" +
		"# internal/natsauth by `eventline nats config`: edit the code, not this file.\n")
	if envs := c.PasswordEnvs(); len(envs) > 0 {
		b.WriteString("# Passwords come from the environment: " + strings.Join(envs, ", ") + ".\n")
	}
	writeTree(&b, c.tree(), 0)
	return b.String()
}

func indent(b *strings.Builder, depth int) { b.WriteString(strings.Repeat("  ", depth)) }

func comment(b *strings.Builder, text string, depth int) {
	if text != "" {
		indent(b, depth)
		b.WriteString("# " + text + "\n")
	}
}

func writeTree(b *strings.Builder, t tree, depth int) {
	for _, f := range t {
		comment(b, f.comment, depth)
		indent(b, depth)
		b.WriteString(f.key)
		switch v := f.val.(type) {
		case tree:
			b.WriteString(" {\n")
			writeTree(b, v, depth+1)
			indent(b, depth)
			b.WriteString("}\n")
		case []item:
			b.WriteString(": [\n")
			for _, it := range v {
				comment(b, it.comment, depth+1)
				indent(b, depth+1)
				writeValue(b, it.val, depth+1)
			}
			indent(b, depth)
			b.WriteString("]\n")
		default:
			b.WriteString(": ")
			writeValue(b, v, depth)
		}
	}
}

func writeValue(b *strings.Builder, v any, depth int) {
	switch v := v.(type) {
	case tree:
		b.WriteString("{\n")
		writeTree(b, v, depth+1)
		indent(b, depth)
		b.WriteString("}\n")
	case raw:
		b.WriteString(string(v) + "\n")
	case string:
		b.WriteString(strconv.Quote(v) + "\n")
	default:
		panic(fmt.Sprintf("natsauth: cannot render %T", v))
	}
}

// Helm renders the configuration as YAML for the official NATS Helm
// chart's config.merge, where a string "<< $VAR >>" is written unquoted
// (environment variable references).
func (c Config) Helm() ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(yamlTree(c.tree())); err != nil {
		return nil, fmt.Errorf("render Helm values: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("render Helm values: %w", err)
	}
	return b.Bytes(), nil
}

func yamlTree(t tree) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode}
	for _, f := range t {
		k := &yaml.Node{Kind: yaml.ScalarNode, Value: f.key, HeadComment: f.comment}
		n.Content = append(n.Content, k, yamlValue(f.val))
	}
	return n
}

func yamlValue(v any) *yaml.Node {
	switch v := v.(type) {
	case tree:
		return yamlTree(v)
	case []item:
		n := &yaml.Node{Kind: yaml.SequenceNode}
		for _, it := range v {
			c := yamlValue(it.val)
			if c.Kind == yaml.ScalarNode {
				c.LineComment = it.comment
			} else {
				c.HeadComment = it.comment
			}
			n.Content = append(n.Content, c)
		}
		return n
	case raw:
		s := string(v)
		if strings.HasPrefix(s, "$") {
			s = "<< " + s + " >>"
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Value: s}
	case string:
		return &yaml.Node{Kind: yaml.ScalarNode, Value: v, Style: yaml.DoubleQuotedStyle}
	default:
		panic(fmt.Sprintf("natsauth: cannot render %T", v))
	}
}

// ServerOptions parses the rendering with nats-server's own parser into
// options for an embedded server; the caller adds listen address, JetStream
// and the rest. Every password must be given (the embedded server has no
// environment to substitute them from).
func (c Config) ServerOptions() (*server.Options, error) {
	if envs := c.PasswordEnvs(); len(envs) > 0 {
		return nil, fmt.Errorf("natsauth: no password for %s", strings.Join(envs, ", "))
	}
	opts := &server.Options{}
	if err := opts.ProcessConfigString(c.Conf()); err != nil {
		return nil, fmt.Errorf("natsauth: the rendered configuration does not parse: %w", err)
	}
	return opts, nil
}
