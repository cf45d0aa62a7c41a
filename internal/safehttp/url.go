package safehttp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// URLError is returned by [Client.ValidateURL]. Its message says what is
// wrong with the URL and how to fix it, for the tenant who sent it; Err, if
// any, is the cause ([*BlockedError], [*net.DNSError], a url parse error).
type URLError struct {
	// URL is the URL as given.
	URL string
	// Problem is the message: what is wrong, and how to fix it.
	Problem string
	// Err is the underlying error, or nil.
	Err error
}

func (e *URLError) Error() string { return e.Problem }

func (e *URLError) Unwrap() error { return e.Err }

// ValidateURL checks a webhook URL when an endpoint is created or changed:
// the scheme is http or https, there is a host and no user:password@, the
// port (if any) is 1-65535, and every address the host resolves to is
// allowed by the policy. An IPv4 address written any way but dotted decimal
// ("2130706433", "0x7f.1", "017700000001", "127.1") is refused: resolvers
// disagree on what those mean. Errors are *URLError.
//
// This check is advisory — DNS can change before the delivery — and the
// dialer checks again on every connection. ValidateURL resolves with
// [Config.Resolver] and honours ctx for the lookup.
func (c *Client) ValidateURL(ctx context.Context, rawURL string) error {
	fail := func(err error, format string, args ...any) error {
		return &URLError{URL: rawURL, Problem: fmt.Sprintf(format, args...), Err: err}
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the whole URL
		}
		return fail(err, "not a valid URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		if u.Scheme == "" {
			return fail(nil, "URL must be absolute and start with https:// or http://")
		}
		return fail(nil, "URL scheme %q is not supported; use https:// or http://", u.Scheme)
	}
	if u.Opaque != "" {
		return fail(nil, "URL must have the form %s://host/path", u.Scheme)
	}
	if u.User != nil {
		return fail(nil, "URL must not contain a user name or password (user:password@host); put credentials in the path or a query parameter instead")
	}
	host := u.Hostname()
	if host == "" {
		return fail(nil, "URL has no host")
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fail(nil, "URL port %s is not between 1 and 65535", port)
		}
	}

	if addr, err := netip.ParseAddr(host); err == nil {
		if err := c.policy.check(addr); err != nil {
			return fail(err, "host %s is %s; %s", host, reason(err), allowHint)
		}
		return nil
	}
	if addr, numeric, ok := parseNumericHost(host); numeric {
		if !ok {
			return fail(nil, "host %q looks like an IPv4 address but is not one; write the address as four decimal numbers (a.b.c.d) or use a host name", host)
		}
		if err := c.policy.check(addr); err != nil {
			return fail(err, "host %q is %s, %s; %s", host, addr, reason(err), allowHint)
		}
		return fail(nil, "host %q is the IPv4 address %s written in a non-standard form; write it as %s", host, addr, addr)
	}

	addrs, err := c.resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		// Not err's text: it names eventline's own DNS server.
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			return fail(err, "host %q does not exist in DNS; check the name, or create its DNS record first", host)
		}
		return fail(err, "host %q could not be resolved (DNS lookup failed); try again, and check the name and its DNS records", host)
	}
	if len(addrs) == 0 {
		return fail(nil, "host %q has no addresses; check the name, or create its DNS record first", host)
	}
	for _, addr := range addrs {
		if err := c.policy.check(addr); err != nil {
			return fail(err, "host %q resolves to %s, %s; %s", host, addr.Unmap(), reason(err), allowHint)
		}
	}
	return nil
}

// reason is the range description of a policy refusal.
func reason(err error) string {
	var b *BlockedError
	if errors.As(err, &b) {
		return b.Reason
	}
	return err.Error()
}

// parseNumericHost reads the IPv4 spellings that inet_aton(3) and the
// WHATWG URL standard accept but netip.ParseAddr does not: one to four
// parts separated by dots, each decimal, octal (leading 0) or hex (0x), the
// last part filling the remaining bytes, and an optional trailing dot.
// net/url passes them through as host names; Go's resolver looks some of
// them up in DNS (where anyone could answer for them) and getaddrinfo reads
// them as addresses. numeric reports whether host is meant as a number (its
// last label is digits, or 0x and hex digits, as WHATWG decides); ok
// whether it is a valid one.
func parseNumericHost(host string) (addr netip.Addr, numeric, ok bool) {
	host = strings.TrimSuffix(host, ".")
	parts := strings.Split(host, ".")
	if !looksNumeric(parts[len(parts)-1]) {
		return netip.Addr{}, false, false
	}
	if len(parts) > 4 {
		return netip.Addr{}, true, false
	}
	var v uint64
	for i, part := range parts {
		n, ok := parseNumericPart(part)
		if !ok {
			return netip.Addr{}, true, false
		}
		last := i == len(parts)-1
		if !last {
			if n > 255 {
				return netip.Addr{}, true, false
			}
			v = v<<8 | n
			continue
		}
		rest := uint(8 * (4 - i)) // bits the last part fills
		if n >= 1<<rest {
			return netip.Addr{}, true, false
		}
		v = v<<rest | n
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true, true
}

func looksNumeric(label string) bool {
	if label == "" {
		return false
	}
	if h, ok := strings.CutPrefix(strings.ToLower(label), "0x"); ok {
		return strings.Trim(h, "0123456789abcdef") == ""
	}
	return strings.Trim(label, "0123456789") == ""
}

func parseNumericPart(s string) (uint64, bool) {
	base := 10
	switch {
	case strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X"):
		s, base = s[2:], 16
		if s == "" {
			return 0, true // "0x" is 0 in WHATWG
		}
	case len(s) > 1 && s[0] == '0':
		s, base = s[1:], 8
	}
	if s == "" {
		return 0, false
	}
	n, err := strconv.ParseUint(s, base, 32)
	if err != nil {
		return 0, false
	}
	return n, true
}
