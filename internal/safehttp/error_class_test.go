package safehttp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	// As net/http returns them: a *url.Error around a *net.OpError.
	wrap := func(err error) error {
		return &url.Error{Op: "Post", URL: "https://example.test/hook", Err: &net.OpError{Op: "dial", Net: "tcp", Err: err}}
	}
	tests := []struct {
		name   string
		err    error
		status int
		want   ErrorClass
	}{
		{"200", nil, 200, ""},
		{"204", nil, 204, ""},
		{"299", nil, 299, ""},
		{"no status", nil, 0, ClassStatus},
		{"199", nil, 199, ClassStatus},
		{"302", nil, 302, ClassStatus},
		{"404", nil, 404, ClassStatus},
		{"410", nil, 410, ClassStatus},
		{"500", nil, 500, ClassStatus},
		{"blocked address", wrap(&BlockedError{Addr: netip.MustParseAddr("127.0.0.1"), Reason: "a loopback address"}), 0, ClassBlocked},
		{"blocked network", wrap(fmt.Errorf("%w: network udp", ErrBlocked)), 0, ClassBlocked},
		{"dns not found", wrap(&net.DNSError{Err: "no such host", Name: "x.test", IsNotFound: true}), 0, ClassDNS},
		{"dns timeout", wrap(&net.DNSError{Err: "i/o timeout", Name: "x.test", IsTimeout: true}), 0, ClassDNS},
		{"deadline", wrap(context.DeadlineExceeded), 0, ClassTimeout},
		{"i/o timeout", wrap(os.ErrDeadlineExceeded), 0, ClassTimeout},
		{"refused", wrap(os.NewSyscallError("connect", syscall.ECONNREFUSED)), 0, ClassRefused},
		{"reset", wrap(os.NewSyscallError("read", syscall.ECONNRESET)), 0, ClassReset},
		{"broken pipe", wrap(os.NewSyscallError("write", syscall.EPIPE)), 0, ClassReset},
		{"closed before response", &url.Error{Op: "Post", URL: "u", Err: io.EOF}, 0, ClassReset},
		{"body cut short", fmt.Errorf("read response body: %w", io.ErrUnexpectedEOF), 200, ClassReset},
		{"not TLS", wrap(tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}), 0, ClassTLS},
		{"unknown authority", wrap(&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), 0, ClassTLS},
		{"wrong host name", wrap(x509.HostnameError{Host: "x.test"}), 0, ClassTLS},
		{"expired", wrap(x509.CertificateInvalidError{Reason: x509.Expired}), 0, ClassTLS},
		{"handshake failed", &tlsHandshakeError{err: wrap(errors.New("remote error: tls: handshake failure"))}, 0, ClassTLS},
		{"handshake reset", &tlsHandshakeError{err: wrap(os.NewSyscallError("read", syscall.ECONNRESET))}, 0, ClassReset},
		{"handshake timeout", &tlsHandshakeError{err: wrap(context.DeadlineExceeded)}, 0, ClassTimeout},
		{"unreachable", wrap(os.NewSyscallError("connect", syscall.EHOSTUNREACH)), 0, ClassNetwork},
		{"anything else", errors.New("something"), 0, ClassNetwork},
		{"error wins over status", fmt.Errorf("read response body: %w", os.ErrDeadlineExceeded), 200, ClassTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, Classify(tt.err, tt.status))
		})
	}
}
