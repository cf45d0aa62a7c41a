package stream_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/config"
	"github.com/eventline/eventline/internal/stream"
	"github.com/eventline/eventline/internal/testenv"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestClientRedacted(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                                   "nats://127.0.0.1:4222",
		"nats://h:4222":                      "nats://h:4222",
		"nats://user:s3cret@h:4222":          "nats://redacted@h:4222",
		"nats://t0ken@h:4222":                "nats://redacted@h:4222",
		"nats://a:p1@h1:4222,nats://a:p1@h2": "nats://redacted@h1:4222,nats://redacted@h2",
		"nats://a:p%zz@h:4222":               "(a URL that does not parse)",
	} {
		got := stream.Client{URL: in}.Redacted()
		require.Equal(t, want, got, in)
	}
}

// TestClientOptionsRefuse: one way to authenticate, a password needs a
// user, a client certificate needs its key; and an unparseable URL is
// refused without repeating it.
func TestClientOptionsRefuse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		c    stream.Client
		want string
	}{
		{stream.Client{User: "a", Token: "t"}, "set one way to authenticate, not NATS_USER and NATS_TOKEN"},
		{stream.Client{URL: "nats://u:p@h:1", User: "a"}, "credentials in NATS_URL and NATS_USER"},
		{stream.Client{Creds: "/x.creds", NKey: "/x.nk"}, "NATS_NKEY"},
		{stream.Client{Password: "p"}, "NATS_PASSWORD is set without NATS_USER"},
		{stream.Client{TLSCert: "c.pem"}, "NATS_TLS_CERT and NATS_TLS_KEY go together"},
		{stream.Client{URL: "nats://u:s3cret%zz@h:1"}, "URL 1 is not a URL"},
		{stream.Client{URL: "nats://h:1,not a url"}, "URL 2 is not a URL"},
	} {
		_, err := tc.c.Options()
		require.ErrorContains(t, err, tc.want, "%+v", tc.c)
		require.NotContains(t, err.Error(), "s3cret")
	}
}

// TestClientRegister: every setting is a flag and an environment
// variable.
func TestClientRegister(t *testing.T) {
	t.Setenv("NATS_USER", "ingest")
	t.Setenv("NATS_PASSWORD", "from-env")
	t.Setenv("NATS_TLS_CA", "/ca.pem")
	var c stream.Client
	set := config.New("test")
	c.Register(set)
	require.NoError(t, set.Parse([]string{"--nats-url", "nats://h:1", "--nats-creds", "/c.creds", "--nats-nkey", "/n.nk", "--nats-token", "tok",
		"--nats-tls-cert", "/c.pem", "--nats-tls-key", "/k.pem"}))
	require.Equal(t, stream.Client{URL: "nats://h:1", Creds: "/c.creds", NKey: "/n.nk", User: "ingest", Password: "from-env", Token: "tok",
		TLSCA: "/ca.pem", TLSCert: "/c.pem", TLSKey: "/k.pem"}, c)
}

func startServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port, opts.NoLog, opts.NoSigs = "127.0.0.1", server.RANDOM_PORT, true, true
	s, err := server.NewServer(opts)
	require.NoError(t, err)
	s.Start()
	require.True(t, s.ReadyForConnections(10*time.Second))
	t.Cleanup(s.Shutdown)
	return s
}

// TestConnectAuthenticates connects with each way to authenticate to a
// server that requires it, and is refused with a wrong secret (which the
// error does not repeat).
func TestConnectAuthenticates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ukp, err := nkeys.CreateUser()
	require.NoError(t, err)
	upub, err := ukp.PublicKey()
	require.NoError(t, err)
	seed, err := ukp.Seed()
	require.NoError(t, err)
	seedFile := filepath.Join(dir, "user.nk")
	require.NoError(t, os.WriteFile(seedFile, seed, 0o600))
	other, err := nkeys.CreateUser()
	require.NoError(t, err)
	otherSeed, err := other.Seed()
	require.NoError(t, err)
	otherFile := filepath.Join(dir, "other.nk")
	require.NoError(t, os.WriteFile(otherFile, otherSeed, 0o600))

	withUsers := startServer(t, &server.Options{Users: []*server.User{{Username: "ingest", Password: "right-pa55"}}, Nkeys: []*server.NkeyUser{{Nkey: upub}}})
	withToken := startServer(t, &server.Options{Authorization: "right-t0ken"})
	for _, tc := range []struct {
		name string
		c    stream.Client
		ok   bool
	}{
		{"user and password", stream.Client{URL: withUsers.ClientURL(), User: "ingest", Password: "right-pa55"}, true},
		{"wrong password", stream.Client{URL: withUsers.ClientURL(), User: "ingest", Password: "wrong-pa55"}, false},
		{"password in the URL", stream.Client{URL: strings.Replace(withUsers.ClientURL(), "nats://", "nats://ingest:right-pa55@", 1)}, true},
		{"wrong password in the URL", stream.Client{URL: strings.Replace(withUsers.ClientURL(), "nats://", "nats://ingest:wrong-pa55@", 1)}, false},
		{"nkey seed", stream.Client{URL: withUsers.ClientURL(), NKey: seedFile}, true},
		{"unknown nkey", stream.Client{URL: withUsers.ClientURL(), NKey: otherFile}, false},
		{"no credentials", stream.Client{URL: withUsers.ClientURL()}, false},
		{"token", stream.Client{URL: withToken.ClientURL(), Token: "right-t0ken"}, true},
		{"wrong token", stream.Client{URL: withToken.ClientURL(), Token: "wrong-t0ken"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := stream.Connect(tc.c, "ingest", "test", quiet)
			if tc.ok {
				require.NoError(t, err)
				nc.Close()
				return
			}
			require.ErrorIs(t, err, nats.ErrAuthorization)
			for _, secret := range []string{"wrong-pa55", "right-pa55", "wrong-t0ken"} {
				require.NotContains(t, err.Error(), secret)
			}
		})
	}
}

// TestConnectSetsTheInboxPrefix: replies to a service's requests come to
// its own prefix, the one its NATS identity may subscribe to.
func TestConnectSetsTheInboxPrefix(t *testing.T) {
	t.Parallel()
	s := startServer(t, &server.Options{})
	nc, err := stream.Connect(stream.Client{URL: s.ClientURL()}, "projector", "test", quiet)
	require.NoError(t, err)
	defer nc.Close()
	require.True(t, strings.HasPrefix(nc.NewInbox(), "_INBOX_projector."), nc.NewInbox())
}

// tlsFiles writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, all PEM.
func tlsFiles(t *testing.T) (dir string) {
	t.Helper()
	dir = t.TempDir()
	write := func(name, typ string, der []byte) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
	}
	newKey := func(name string) *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		der, err := x509.MarshalECPrivateKey(k)
		require.NoError(t, err)
		write(name, "EC PRIVATE KEY", der)
		return k
	}
	caKey := newKey("ca-key.pem")
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "eventline test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	write("ca.pem", "CERTIFICATE", caDER)
	caCert, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	for i, leaf := range []struct {
		name  string
		usage x509.ExtKeyUsage
	}{{"server", x509.ExtKeyUsageServerAuth}, {"client", x509.ExtKeyUsageClientAuth}} {
		k := newKey(leaf.name + "-key.pem")
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: leaf.name}, NotBefore: time.Now().Add(-time.Hour),
			NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{leaf.usage}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
			KeyUsage: x509.KeyUsageDigitalSignature}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		require.NoError(t, err)
		write(leaf.name+".pem", "CERTIFICATE", der)
	}
	return dir
}

// TestConnectTLS: a server that requires TLS and verifies client
// certificates takes a client with the CA and a client certificate, and
// refuses one without either.
func TestConnectTLS(t *testing.T) {
	t.Parallel()
	dir := tlsFiles(t)
	f := func(name string) string { return filepath.Join(dir, name) }
	cert, err := tls.LoadX509KeyPair(f("server.pem"), f("server-key.pem"))
	require.NoError(t, err)
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(f("ca.pem"))
	require.NoError(t, err)
	require.True(t, pool.AppendCertsFromPEM(caPEM))
	s := startServer(t, &server.Options{TLS: true, TLSVerify: true, TLSTimeout: 5, TLSConfig: &tls.Config{
		Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}})
	url := fmt.Sprintf("tls://127.0.0.1:%d", s.Addr().(*net.TCPAddr).Port)

	nc, err := stream.Connect(stream.Client{URL: url, TLSCA: f("ca.pem"), TLSCert: f("client.pem"), TLSKey: f("client-key.pem")}, "ingest", "test", quiet)
	require.NoError(t, err)
	require.True(t, nc.TLSRequired())
	nc.Close()

	_, err = stream.Connect(stream.Client{URL: url, TLSCA: f("ca.pem")}, "ingest", "test", quiet)
	require.Error(t, err, "no client certificate")
	_, err = stream.Connect(stream.Client{URL: url, TLSCert: f("client.pem"), TLSKey: f("client-key.pem")}, "ingest", "test", quiet)
	require.ErrorContains(t, err, "certificate", "a server certificate from an unknown CA")
}

// TestPresence: the check names a missing stream or durable and how to
// create it, answers from its last result within the interval, and sees a
// change after it.
func TestPresence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := startServer(t, &server.Options{JetStream: true, StoreDir: t.TempDir()})
	nc, err := nats.Connect(s.ClientURL())
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)

	p := stream.NewPresence(js, "projector", 100*time.Millisecond)
	err = p.Check(ctx)
	require.ErrorIs(t, err, stream.ErrMissing)
	require.ErrorContains(t, err, "stream EVENTS does not exist")
	require.ErrorContains(t, err, "eventline migrate")

	_, err = stream.Ensure(ctx, nc, stream.Config{})
	require.NoError(t, err)
	require.ErrorIs(t, p.Check(ctx), stream.ErrMissing, "the cached answer within the interval")
	var last error
	testenv.Poll(t, 10*time.Second, "the check sees the stream", func() bool {
		last = p.Check(ctx)
		return last != nil && strings.Contains(last.Error(), "durable consumer projector")
	})
	require.ErrorContains(t, last, "eventline migrate")
	_, err = js.CreateOrUpdateConsumer(ctx, "EVENTS", jetstream.ConsumerConfig{Durable: "projector", AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)
	testenv.Poll(t, 10*time.Second, "the check sees the durable", func() bool { return p.Check(ctx) == nil })
	require.NoError(t, stream.NewPresence(js, "", 0).Check(ctx), "the stream alone")
}
