// Package deploy_test checks the deployment files offline: the
// docker-compose.yml at the repository root, the Dockerfile, the NATS
// configurations and the kustomize tree under deploy/. No Docker engine or
// cluster is needed.
package deploy_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/natsauth"
)

// services are the scalable eventline services with their admin ports.
var services = map[string]string{"ingest": "9090", "projector": "9091", "webhooker": "9092", "notifier": "9093"}

// consumers are the services that read the stream through a durable of
// their own name.
var consumers = []string{"projector", "notifier", "webhooker"}

// composeSecrets are the variables docker-compose.yml requires. The
// loader adds to the mapping it is given: hand it copies.
func composeSecrets() types.Mapping {
	m := types.Mapping{"EVENTLINE_SECRET_KEY": "a2V5LWZvci10aGUtY29tcG9zZS10ZXN0LTMyLWJ5dGU=", "UNSUBSCRIBE_SECRET": "unsubscribe-test-secret"}
	for _, env := range (natsauth.Config{}).PasswordEnvs() {
		m[env] = "pw-" + env
	}
	return m
}

func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	p, err := loadComposeEnv(composeSecrets())
	require.NoError(t, err, "docker-compose.yml must load as the Compose specification")
	return p
}

func loadComposeEnv(env types.Mapping) (*types.Project, error) {
	root, err := filepath.Abs("..")
	if err != nil {
		return nil, err
	}
	return loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "docker-compose.yml")}},
		Environment: env,
	}, func(o *loader.Options) { o.SetProjectName("eventline", true) })
}

// TestComposeRequiresSecrets: the webhooker's sealing key and the
// notifier's unsubscribe secret have no default; compose refuses to start
// without them and says how to make one.
func TestComposeRequiresSecrets(t *testing.T) {
	t.Parallel()
	for name := range composeSecrets() {
		env := composeSecrets()
		delete(env, name)
		_, err := loadComposeEnv(env)
		require.ErrorContains(t, err, name, "loading without %s fails naming it", name)
		require.ErrorContains(t, err, "openssl rand")
	}
	p := loadCompose(t)
	w, err := p.GetService("webhooker")
	require.NoError(t, err)
	require.Equal(t, composeSecrets()["EVENTLINE_SECRET_KEY"], *w.Environment["EVENTLINE_SECRET_KEY"])
	n, err := p.GetService("notifier")
	require.NoError(t, err)
	require.Equal(t, composeSecrets()["UNSUBSCRIBE_SECRET"], *n.Environment["UNSUBSCRIBE_SECRET"])
}

// TestComposeServiceGraph: every part is there, started in the right order
// with the right conditions, and the consumer services can be scaled.
func TestComposeServiceGraph(t *testing.T) {
	t.Parallel()
	p := loadCompose(t)
	for _, name := range []string{"nats", "postgres", "migrate", "ingest", "projector", "notifier", "webhooker", "gateway", "mailpit"} {
		_, err := p.GetService(name)
		require.NoError(t, err, "service %s", name)
	}

	migrate, _ := p.GetService("migrate")
	require.Equal(t, []string{"eventline", "migrate"}, []string(migrate.Command))
	require.Equal(t, "no", migrate.Restart, "migrate runs once")
	require.Equal(t, types.ServiceConditionHealthy, migrate.DependsOn["postgres"].Condition)
	require.Equal(t, types.ServiceConditionHealthy, migrate.DependsOn["nats"].Condition, "migrate provisions the stream and durables")
	require.Equal(t, "nats://nats:4222", *migrate.Environment["NATS_URL"])
	require.Equal(t, natsauth.Admin, *migrate.Environment["NATS_USER"], "migrate provisions as the NATS admin")
	require.Equal(t, "pw-NATS_ADMIN_PASSWORD", *migrate.Environment["NATS_PASSWORD"])

	for name, adminPort := range services {
		s, err := p.GetService(name)
		require.NoError(t, err)
		require.Equal(t, []string{name}, []string(s.Command), "%s runs its binary", name)
		require.Equal(t, types.ServiceConditionHealthy, s.DependsOn["nats"].Condition, "%s waits for a healthy NATS", name)
		require.Equal(t, types.ServiceConditionHealthy, s.DependsOn["postgres"].Condition, "%s waits for a healthy Postgres", name)
		require.Equal(t, types.ServiceConditionCompletedSuccessfully, s.DependsOn["migrate"].Condition, "%s starts after the migrations", name)

		// Scalable: no fixed host port or container name.
		require.Empty(t, s.Ports, "%s publishes no host port (docker compose up --scale %s=4 must work)", name, name)
		require.Empty(t, s.ContainerName, "%s has no container_name", name)

		require.NotNil(t, s.HealthCheck, "%s has a healthcheck", name)
		require.Equal(t, []string{"CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:" + adminPort + "/readyz"}, []string(s.HealthCheck.Test),
			"%s is healthy when its /readyz on the admin port answers 2xx", name)

		env := s.Environment
		require.Equal(t, "nats://nats:4222", *env["NATS_URL"], name)
		require.Equal(t, name, *env["NATS_USER"], "%s connects as its own NATS identity", name)
		require.Equal(t, "pw-"+natsauth.PasswordEnv(name), *env["NATS_PASSWORD"], name)
		require.Contains(t, *env["DATABASE_URL"], "@postgres:5432/eventline", name)
		require.Contains(t, env, "OTEL_EXPORTER_OTLP_ENDPOINT", name)
		require.Equal(t, "eventline:local", s.Image, "%s runs the image the Dockerfile builds", name)
		require.Equal(t, p.WorkingDir, s.Build.Context, "%s builds the repository Dockerfile", name)

		// The gateway waits for every replica set to be healthy.
		gw, _ := p.GetService("gateway")
		require.Equal(t, types.ServiceConditionHealthy, gw.DependsOn[name].Condition)
	}

	notifier, _ := p.GetService("notifier")
	require.Equal(t, "smtp://mailpit:1025", *notifier.Environment["SMTP_URL"])
	require.NotEmpty(t, *notifier.Environment["MAIL_FROM"])
	require.NotEmpty(t, *notifier.Environment["PUBLIC_URL"])
	require.Equal(t, types.ServiceConditionHealthy, notifier.DependsOn["mailpit"].Condition)

	postgres, _ := p.GetService("postgres")
	require.Equal(t, "pg_isready", postgres.HealthCheck.Test[1])

	nats, _ := p.GetService("nats")
	require.Regexp(t, `^nats:2\.(1[2-9]|[2-9][0-9])-alpine`, nats.Image, "NATS >= 2.12, alpine (the scratch image has no shell or wget for a healthcheck)")
	require.Equal(t, []string{"CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8222/healthz?js-enabled-only=true"}, []string(nats.HealthCheck.Test))
	mounts := map[string]string{}
	for _, v := range nats.Volumes {
		mounts[v.Target] = v.Source
	}
	require.Equal(t, filepath.Join(p.WorkingDir, "deploy", "nats", "nats.conf"), mounts["/etc/nats/eventline.conf"], "the NATS config file is mounted")
	require.Equal(t, filepath.Join(p.WorkingDir, "deploy", "nats", "auth.conf"), mounts["/etc/nats/auth.conf"], "next to the identities it includes")
	for _, env := range (natsauth.Config{}).PasswordEnvs() {
		require.Equal(t, "pw-"+env, *nats.Environment[env], "NATS reads %s", env)
	}
	require.Equal(t, []string{"nats-server", "--config", "/etc/nats/eventline.conf"}, []string(nats.Command))

	// The gateway routes every service's API (docs/contract.md §2 prefixes).
	caddy, err := os.ReadFile(filepath.Join(p.WorkingDir, "deploy", "compose", "Caddyfile"))
	require.NoError(t, err)
	for name, port := range map[string]string{"ingest": "8080", "projector": "8081", "webhooker": "8082", "notifier": "8083"} {
		require.Contains(t, string(caddy), "dynamic a "+name+" "+port, "the gateway balances over every %s replica", name)
	}
	// What browsers use (docs/browser.md) goes to the notifier.
	require.Regexp(t, `@notifier path .*/v1/user-tokens /v1/browser-origins /v1/sentence-templates /v1/digests/\* /components/\*`, string(caddy))
}

// TestNATSConfigFsyncAlways: the compose NATS server runs JetStream with
// fsync before every acknowledgement, serves monitoring on 8222 and lets
// in eventline's identities only, with their passwords from the
// environment. Not parallel: t.Setenv.
func TestNATSConfigFsyncAlways(t *testing.T) {
	setPasswords(t)
	opts, err := server.ProcessConfigFile(filepath.Join("nats", "nats.conf"))
	require.NoError(t, err)
	require.True(t, opts.JetStream, "JetStream is enabled")
	require.True(t, opts.SyncAlways, "jetstream { sync_interval: always }")
	require.Equal(t, 8222, opts.HTTPPort, "monitoring port for the healthcheck and KEDA")
	require.Equal(t, 4222, opts.Port)
	requireIdentities(t, opts)
}

// TestNATSDevConfig: the `make run` server (deploy/nats-dev.conf) has the
// same identities. Not parallel: t.Setenv.
func TestNATSDevConfig(t *testing.T) {
	setPasswords(t)
	opts, err := server.ProcessConfigFile("nats-dev.conf")
	require.NoError(t, err)
	require.True(t, opts.SyncAlways)
	require.Equal(t, "127.0.0.1", opts.Host, "make run's NATS listens on loopback only")
	requireIdentities(t, opts)
}

// setPasswords puts a password for every identity in the environment, as
// the shipped configurations expect.
func setPasswords(t *testing.T) {
	t.Helper()
	for _, env := range (natsauth.Config{}).PasswordEnvs() {
		t.Setenv(env, "pw-"+env)
	}
}

// requireIdentities: the server has exactly eventline's identities, each
// with its password from the environment and its permissions, and no
// user without a password (anonymous clients are refused).
func requireIdentities(t *testing.T, opts *server.Options) {
	t.Helper()
	require.Empty(t, opts.NoAuthUser, "no anonymous user")
	require.Empty(t, opts.Authorization, "no shared token")
	require.Equal(t, natsauth.AccountSystem, opts.SystemAccount)
	got := map[string]*server.User{}
	for _, u := range opts.Users {
		got[u.Username] = u
	}
	ids := (natsauth.Config{}).Rendered()
	require.Len(t, got, len(ids))
	for _, id := range ids {
		u, ok := got[id.Name]
		require.True(t, ok, id.Name)
		require.Equal(t, "pw-"+natsauth.PasswordEnv(id.Name), u.Password, id.Name)
		require.Equal(t, id.Account, u.Account.Name, id.Name)
		require.Equal(t, id.Allowed(natsauth.Publish), u.Permissions.Publish.Allow, id.Name)
		require.Equal(t, id.Allowed(natsauth.Subscribe), u.Permissions.Subscribe.Allow, id.Name)
	}
}

// TestDockerfile: multi-stage, every binary built without cgo, a non-root
// runtime user, and a build context that leaves out what is not needed.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "Dockerfile"))
	require.NoError(t, err)
	df := string(b)
	require.Len(t, regexp.MustCompile(`(?m)^FROM `).FindAllString(df, -1), 2, "build and runtime stages")
	require.Regexp(t, `(?m)^FROM golang:1\.26`, df, "the go.mod toolchain")
	require.Contains(t, df, "CGO_ENABLED=0")
	require.Contains(t, df, "./cmd/...", "every binary")
	user := regexp.MustCompile(`(?m)^USER (\S+)`).FindStringSubmatch(df)
	require.NotNil(t, user, "a USER line")
	require.NotContains(t, []string{"root", "0", "0:0"}, user[1], "the runtime user is not root")
	require.Regexp(t, `(?m)^COPY --from=build /out/ /usr/local/bin/`, df)

	ignore, err := os.ReadFile(filepath.Join("..", ".dockerignore"))
	require.NoError(t, err)
	lines := strings.Split(string(ignore), "\n")
	for _, want := range []string{".git", ".eventline", "bench-results"} {
		require.True(t, slices.Contains(lines, want), ".dockerignore leaves out %s", want)
	}
	for _, l := range lines {
		require.NotContains(t, []string{"go.mod", "go.sum", "cmd", "internal", "pkg"}, strings.TrimSpace(l), "the build needs %s", l)
	}
}
