package safehttp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"syscall"
)

// ErrorClass is the kind of failure of one delivery attempt, recorded in
// the delivery log next to the status code so a tenant can tell "your
// server said 500" from "we could not reach it" at a glance.
type ErrorClass string

// The classes. Classify returns "" for a success.
const (
	// ClassDNS: the host name could not be resolved.
	ClassDNS ErrorClass = "dns"
	// ClassBlocked: the host resolved to an address the policy refuses.
	ClassBlocked ErrorClass = "blocked"
	// ClassTimeout: no complete answer within the timeout.
	ClassTimeout ErrorClass = "timeout"
	// ClassRefused: nothing listens on that address and port.
	ClassRefused ErrorClass = "refused"
	// ClassReset: the server accepted the connection, then dropped it
	// (reset, or closed before sending a response). Not in the original
	// list: it points at the receiver or a proxy in front of it, where
	// "refused" and "timeout" point elsewhere.
	ClassReset ErrorClass = "reset"
	// ClassTLS: the TLS handshake failed (certificate not trusted, wrong
	// host name, expired, no common protocol version, not TLS at all).
	ClassTLS ErrorClass = "tls"
	// ClassStatus: a response came back with a status other than 2xx
	// (3xx included: redirects are not followed).
	ClassStatus ErrorClass = "status"
	// ClassNetwork: any other transport failure (network or host
	// unreachable, ...). Classify must answer for every error; this is the
	// rest.
	ClassNetwork ErrorClass = "network"
)

// Classify returns the class of an attempt's outcome, from the error and
// status [Client.Do] returned: "" for a success (no error and a 2xx
// status), else the class of the failure. It decides by error types and
// values, never by error text.
//
// A canceled ctx is the caller's doing, not the endpoint's: check ctx.Err()
// before recording the attempt as a failure (Classify would say "network").
func Classify(err error, statusCode int) ErrorClass {
	if err == nil {
		if statusCode >= 200 && statusCode < 300 {
			return ""
		}
		return ClassStatus
	}
	switch {
	case errors.Is(err, ErrBlocked):
		return ClassBlocked
	case isDNS(err):
		return ClassDNS
	case isTimeout(err):
		return ClassTimeout
	case isTLS(err):
		return ClassTLS
	case errors.Is(err, syscall.ECONNREFUSED):
		return ClassRefused
	case isReset(err):
		return ClassReset
	case isHandshake(err):
		// After reset: a handshake cut short by the peer is a reset.
		return ClassTLS
	default:
		return ClassNetwork
	}
}

func isDNS(err error) bool {
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr)
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var netErr net.Error
	return errors.As(err, &netErr) && netErr.Timeout()
}

func isTLS(err error) bool {
	var (
		recordHeader  tls.RecordHeaderError
		verification  *tls.CertificateVerificationError
		alert         tls.AlertError
		ech           *tls.ECHRejectionError
		unknownAuth   x509.UnknownAuthorityError
		hostname      x509.HostnameError
		invalid       x509.CertificateInvalidError
		systemRoots   x509.SystemRootsError
		insecureAlgo  x509.InsecureAlgorithmError
		constraint    x509.ConstraintViolationError
		unhandledCrit x509.UnhandledCriticalExtension
	)
	return errors.As(err, &recordHeader) ||
		errors.As(err, &verification) ||
		errors.As(err, &alert) ||
		errors.As(err, &ech) ||
		errors.As(err, &unknownAuth) ||
		errors.As(err, &hostname) ||
		errors.As(err, &invalid) ||
		errors.As(err, &systemRoots) ||
		errors.As(err, &insecureAlgo) ||
		errors.As(err, &constraint) ||
		errors.As(err, &unhandledCrit)
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF)
}

func isHandshake(err error) bool {
	var hs *tlsHandshakeError
	return errors.As(err, &hs)
}
