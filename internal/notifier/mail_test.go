package notifier

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"
)

// authSession is a session that requires AUTH PLAIN as ana/secret.
type authSession struct {
	smtpSession
	mu     *sync.Mutex
	authed *bool
}

func (s *authSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *authSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != "ana" || pass != "s3cret" {
			return errors.New("bad credentials")
		}
		s.mu.Lock()
		*s.authed = true
		s.mu.Unlock()
		return nil
	}), nil
}

func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// TestSMTPMailerSTARTTLSAndAuth: against a real SMTP server that offers
// STARTTLS and requires AUTH PLAIN, the mailer upgrades, authenticates
// with the URL's credentials and delivers; wrong credentials fail.
func TestSMTPMailerSTARTTLSAndAuth(t *testing.T) {
	t.Parallel()
	cert, roots := selfSigned(t)
	sink := &smtpSink{arrived: make(chan struct{}, 10)}
	var mu sync.Mutex
	var sawTLS, authed bool
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &authSession{smtpSession: smtpSession{sink: sink}, mu: &mu, authed: &authed}, nil
	}))
	srv.Domain = "127.0.0.1"
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		VerifyConnection: func(tls.ConnectionState) error { mu.Lock(); sawTLS = true; mu.Unlock(); return nil }}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })

	m, err := NewSMTPMailer("smtp://ana:s3cret@"+l.Addr().String(), 10*time.Second)
	require.NoError(t, err)
	m.RootCAs = roots
	require.NoError(t, m.Send(context.Background(), "notify@example.com", []string{"ana@example.com"}, []byte("Subject: hi\r\n\r\nhello\r\n")))
	msgs := sink.messages()
	require.Len(t, msgs, 1)
	require.Equal(t, "hi", msgs[0].msg.Header.Get("Subject"))
	mu.Lock()
	require.True(t, sawTLS, "STARTTLS was used")
	require.True(t, authed, "AUTH PLAIN was used")
	mu.Unlock()

	bad, err := NewSMTPMailer("smtp://ana:wrong@"+l.Addr().String(), 10*time.Second)
	require.NoError(t, err)
	bad.RootCAs = roots
	require.ErrorContains(t, bad.Send(context.Background(), "notify@example.com", []string{"ana@example.com"}, []byte("Subject: hi\r\n\r\nx\r\n")), "AUTH")

	// Without trusting the certificate, STARTTLS fails: nothing is sent in
	// the clear to a server that offered TLS.
	untrusted, err := NewSMTPMailer("smtp://ana:s3cret@"+l.Addr().String(), 10*time.Second)
	require.NoError(t, err)
	require.ErrorContains(t, untrusted.Send(context.Background(), "notify@example.com", []string{"ana@example.com"}, []byte("x")), "STARTTLS")
	require.Len(t, sink.messages(), 1)

	_, err = NewSMTPMailer("http://example.com", time.Second)
	require.Error(t, err)
}

// TestSMTPURLErrorsHideThePassword: SMTP_URL errors name the URL without
// its password, including URLs url.Parse refuses or takes as opaque.
func TestSMTPURLErrorsHideThePassword(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		"smtp://ana:pw-4c1e@127.0.0.1:not-a-port": `"smtp://REDACTED@127.0.0.1:not-a-port"`,
		"smtp://ana:pw-4c1e%zz@127.0.0.1:25":      `"smtp://REDACTED@127.0.0.1:25"`,
		"smtp:ana:pw-4c1e@127.0.0.1:25":           `"smtp:REDACTED@127.0.0.1:25"`,
		"http://ana:pw-4c1e@example.com":          `"http://ana@example.com"`,
		"ana:pw-4c1e@127.0.0.1:25":                `"REDACTED@127.0.0.1:25"`,
	} {
		_, err := NewSMTPMailer(raw, time.Second)
		require.Error(t, err, raw)
		require.NotContains(t, err.Error(), "pw-4c1e", raw)
		require.Contains(t, err.Error(), want, raw)
	}
}
