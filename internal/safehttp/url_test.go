package safehttp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestValidateURL(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.dns.set("public.test", "93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946")
	b.dns.set("loopback.test", "127.0.0.1")
	b.dns.set("loopback6.test", "::1")
	b.dns.set("mapped.test", "::ffff:127.0.0.1")
	b.dns.set("metadata.test", "169.254.169.254")
	b.dns.set("mixed.test", "93.184.216.34", "10.0.0.1")
	b.dns.set("nat64.test", "64:ff9b::a9fe:a9fe")
	b.dns.set("empty.test")

	tests := []struct {
		url     string
		problem string // "" means valid
		blocked bool
	}{
		// Valid.
		{url: "https://public.test/hooks/eventline"},
		{url: "http://public.test:8080/hook?token=abc#frag"},
		{url: "HTTPS://PUBLIC.TEST/hook"},
		{url: "https://93.184.216.34/hook"},
		{url: "https://[2606:4700:4700::1111]:8443/hook"},
		{url: "https://[::ffff:93.184.216.34]/hook"},

		// Shape.
		{url: "ftp://public.test/hook", problem: `URL scheme "ftp" is not supported; use https:// or http://`},
		{url: "javascript:alert(1)", problem: `URL scheme "javascript" is not supported; use https:// or http://`},
		{url: "file:///etc/passwd", problem: `URL scheme "file" is not supported; use https:// or http://`},
		{url: "//public.test/hook", problem: "URL must be absolute and start with https:// or http://"},
		{url: "public.test/hook", problem: "URL must be absolute and start with https:// or http://"},
		{url: "", problem: "URL must be absolute and start with https:// or http://"},
		{url: "http:public.test", problem: "URL must have the form http://host/path"},
		{url: "https://", problem: "URL has no host"},
		{url: "https:///hook", problem: "URL has no host"},
		{url: "https://:443/hook", problem: "URL has no host"},
		{url: "https://user:pass@public.test/hook", problem: "URL must not contain a user name or password (user:password@host); put credentials in the path or a query parameter instead"},
		{url: "https://user@public.test/hook", problem: "URL must not contain a user name or password (user:password@host); put credentials in the path or a query parameter instead"},
		{url: "https://public.test:0/hook", problem: "URL port 0 is not between 1 and 65535"},
		{url: "https://public.test:65536/hook", problem: "URL port 65536 is not between 1 and 65535"},
		{url: "https://public.test:abc/hook", problem: `not a valid URL: invalid port ":abc" after host`},
		{url: "https://pub lic.test/", problem: `not a valid URL: invalid character " " in host name`},

		// IP literals.
		{url: "http://127.0.0.1/", problem: "host 127.0.0.1 is a loopback address; " + allowHint, blocked: true},
		{url: "http://127.0.0.1:8080/", problem: "host 127.0.0.1 is a loopback address; " + allowHint, blocked: true},
		{url: "http://[::1]/", problem: "host ::1 is a loopback address; " + allowHint, blocked: true},
		{url: "http://[::ffff:127.0.0.1]/", problem: "host ::ffff:127.0.0.1 is a loopback address; " + allowHint, blocked: true},
		{url: "http://[::ffff:7f00:1]/", problem: "host ::ffff:7f00:1 is a loopback address; " + allowHint, blocked: true},
		{url: "http://[0:0:0:0:0:ffff:127.0.0.1]/", problem: "host 0:0:0:0:0:ffff:127.0.0.1 is a loopback address; " + allowHint, blocked: true},
		{url: "http://169.254.169.254/latest/meta-data/", problem: "host 169.254.169.254 is a link-local address; " + allowHint, blocked: true},
		{url: "http://10.0.0.1/", problem: "host 10.0.0.1 is a private address; " + allowHint, blocked: true},
		{url: "http://0.0.0.0/", problem: `host 0.0.0.0 is a "this network" address; ` + allowHint, blocked: true},
		{url: "http://[::]/", problem: "host :: is the unspecified address; " + allowHint, blocked: true},
		{url: "http://[fe80::1%25eth0]/", problem: "host fe80::1%eth0 is a link-local address; " + allowHint, blocked: true},
		{url: "http://[fd00:ec2::254]/", problem: "host fd00:ec2::254 is a unique-local (private) address; " + allowHint, blocked: true},
		{url: "http://[64:ff9b::7f00:1]/", problem: "host 64:ff9b::7f00:1 is the NAT64 form of 127.0.0.1, a loopback address; " + allowHint, blocked: true},
		{url: "http://[2002:7f00:1::]/", problem: "host 2002:7f00:1:: is a 6to4 address; " + allowHint, blocked: true},
		{url: "http://100.100.100.200/", problem: "host 100.100.100.200 is a carrier-grade NAT address; " + allowHint, blocked: true},

		// Numeric spellings of IPv4 addresses.
		{url: "http://2130706433/", problem: `host "2130706433" is 127.0.0.1, a loopback address; ` + allowHint, blocked: true},
		{url: "http://0x7f.1/", problem: `host "0x7f.1" is 127.0.0.1, a loopback address; ` + allowHint, blocked: true},
		{url: "http://017700000001/", problem: `host "017700000001" is 127.0.0.1, a loopback address; ` + allowHint, blocked: true},
		{url: "http://127.1/", problem: `host "127.1" is 127.0.0.1, a loopback address; ` + allowHint, blocked: true},
		{url: "http://0x7f000001/", problem: `host "0x7f000001" is 127.0.0.1, a loopback address; ` + allowHint, blocked: true},
		{url: "http://0177.0.0.01/", problem: `host "0177.0.0.01" is 127.0.0.1, a loopback address; ` + allowHint, blocked: true},
		{url: "http://127.0.0.1./", problem: `host "127.0.0.1." is 127.0.0.1, a loopback address; ` + allowHint, blocked: true},
		{url: "http://0/", problem: `host "0" is 0.0.0.0, a "this network" address; ` + allowHint, blocked: true},
		{url: "http://2852039166/", problem: `host "2852039166" is 169.254.169.254, a link-local address; ` + allowHint, blocked: true},
		{url: "http://0xa9fea9fe/", problem: `host "0xa9fea9fe" is 169.254.169.254, a link-local address; ` + allowHint, blocked: true},
		{url: "http://1572395042/", problem: `host "1572395042" is the IPv4 address 93.184.216.34 written in a non-standard form; write it as 93.184.216.34`},
		{url: "http://93.184.216.34./", problem: `host "93.184.216.34." is the IPv4 address 93.184.216.34 written in a non-standard form; write it as 93.184.216.34`},
		{url: "http://1.2.3.08/", problem: `host "1.2.3.08" looks like an IPv4 address but is not one; write the address as four decimal numbers (a.b.c.d) or use a host name`},
		{url: "http://4294967296/", problem: `host "4294967296" looks like an IPv4 address but is not one; write the address as four decimal numbers (a.b.c.d) or use a host name`},
		{url: "http://1.2.3.4.5/", problem: `host "1.2.3.4.5" looks like an IPv4 address but is not one; write the address as four decimal numbers (a.b.c.d) or use a host name`},
		{url: "http://public.123/", problem: `host "public.123" looks like an IPv4 address but is not one; write the address as four decimal numbers (a.b.c.d) or use a host name`},

		// Names.
		{url: "http://loopback.test/", problem: `host "loopback.test" resolves to 127.0.0.1, a loopback address; ` + allowHint, blocked: true},
		{url: "http://loopback6.test/", problem: `host "loopback6.test" resolves to ::1, a loopback address; ` + allowHint, blocked: true},
		{url: "http://mapped.test/", problem: `host "mapped.test" resolves to 127.0.0.1, a loopback address; ` + allowHint, blocked: true},
		{url: "http://metadata.test/", problem: `host "metadata.test" resolves to 169.254.169.254, a link-local address; ` + allowHint, blocked: true},
		{url: "http://mixed.test/", problem: `host "mixed.test" resolves to 10.0.0.1, a private address; ` + allowHint, blocked: true},
		{url: "http://nat64.test/", problem: `host "nat64.test" resolves to 64:ff9b::a9fe:a9fe, the NAT64 form of 169.254.169.254, a link-local address; ` + allowHint, blocked: true},
		{url: "http://unknown.test/", problem: `host "unknown.test" does not exist in DNS; check the name, or create its DNS record first`},
		{url: "http://empty.test/", problem: `host "empty.test" does not exist in DNS; check the name, or create its DNS record first`},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			t.Parallel()
			err := b.client.ValidateURL(t.Context(), tt.url)
			if tt.problem == "" {
				require.NoError(t, err)
				return
			}
			require.EqualError(t, err, tt.problem)
			var urlErr *URLError
			require.ErrorAs(t, err, &urlErr)
			require.Equal(t, tt.url, urlErr.URL)
			require.Equal(t, tt.blocked, errors.Is(err, ErrBlocked))
		})
	}
}

func TestValidateURLDNSFailure(t *testing.T) {
	t.Parallel()
	c, err := New(Config{Resolver: &net.Resolver{
		PreferGo: true,
		Dial: func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("no DNS here")
		},
	}})
	require.NoError(t, err)
	err = c.ValidateURL(t.Context(), "https://unreachable-dns.test/hook")
	require.EqualError(t, err, `host "unreachable-dns.test" could not be resolved (DNS lookup failed); try again, and check the name and its DNS records`)
	var dnsErr *net.DNSError
	require.ErrorAs(t, err, &dnsErr)
	require.NotContains(t, err.Error(), "no DNS here", "the resolver's details stay out of the tenant's message")
}

func TestValidateURLAllowed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     Config
		valid   []string
		invalid []string
	}{
		{
			name:    "allow private",
			cfg:     Config{AllowPrivate: true},
			valid:   []string{"http://127.0.0.1:8080/", "http://loopback.test/", "http://[::1]/", "http://10.0.0.1/", "http://169.254.169.254/"},
			invalid: []string{"http://2130706433/", "ftp://127.0.0.1/"}, // still not URLs we deliver to
		},
		{
			name:    "allow-list",
			cfg:     Config{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
			valid:   []string{"http://127.0.0.1:8080/", "http://loopback.test/", "http://[::ffff:127.0.0.1]/"},
			invalid: []string{"http://[::1]/", "http://10.0.0.1/", "http://169.254.169.254/"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, tt.cfg)
			b.dns.set("loopback.test", "127.0.0.1")
			for _, u := range tt.valid {
				require.NoError(t, b.client.ValidateURL(t.Context(), u), u)
			}
			for _, u := range tt.invalid {
				require.Error(t, b.client.ValidateURL(t.Context(), u), u)
			}
		})
	}
}

func TestParseNumericHost(t *testing.T) {
	t.Parallel()
	tests := []struct {
		host    string
		numeric bool
		addr    string // "" when invalid
	}{
		{"2130706433", true, "127.0.0.1"},
		{"0x7f.1", true, "127.0.0.1"},
		{"0X7F.1", true, "127.0.0.1"},
		{"017700000001", true, "127.0.0.1"},
		{"127.1", true, "127.0.0.1"},
		{"127.0.1", true, "127.0.0.1"},
		{"127.0.0.1", true, "127.0.0.1"},
		{"127.0.0.1.", true, "127.0.0.1"},
		{"0x7f.0x0.0x0.0x1", true, "127.0.0.1"},
		{"0", true, "0.0.0.0"},
		{"0x", true, "0.0.0.0"},
		{"00", true, "0.0.0.0"},
		{"4294967295", true, "255.255.255.255"},
		{"4294967296", true, ""},
		{"256.0.0.1", true, ""},
		{"1.256.1", true, ""},
		{"1.1.256", true, "1.1.1.0"},
		{"1.65536.1", true, ""},
		{"1.2.3.08", true, ""},
		{"1.2.3.4.5", true, ""},
		{"1..2", true, ""},
		{"a.1", true, ""},
		{"0xg", false, ""},
		{"public.test", false, ""},
		{"1e100.net", false, ""},
		{"", false, ""},
		{".", false, ""},
	}
	for _, tt := range tests {
		addr, numeric, ok := parseNumericHost(tt.host)
		require.Equal(t, tt.numeric, numeric, tt.host)
		if tt.addr == "" {
			require.False(t, ok, tt.host)
			continue
		}
		require.True(t, ok, tt.host)
		require.Equal(t, tt.addr, addr.String(), tt.host)
	}
}

// FuzzParseNumericHost checks that a dotted-decimal address always reads
// as itself, and that nothing panics.
func FuzzParseNumericHost(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "2130706433", "0x7f.1", "017700000001", "1.2.3.08", "0x", "..", "1.2.3.4.", "9999999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		addr, numeric, ok := parseNumericHost(host)
		if ok && !numeric {
			t.Fatalf("%q: ok but not numeric", host)
		}
		if ok && !addr.Is4() {
			t.Fatalf("%q: parsed to non-IPv4 %s", host, addr)
		}
		if want, err := netip.ParseAddr(host); err == nil && want.Is4() {
			if !ok || addr != want {
				t.Fatalf("%q: got %s %v, want %s", host, addr, ok, want)
			}
		}
	})
}

// FuzzValidateURL checks that ValidateURL never panics and never accepts a
// URL whose host is not a public IP literal, when no name resolves.
func FuzzValidateURL(f *testing.F) {
	for _, s := range []string{
		"https://93.184.216.34/hook", "http://127.0.0.1/", "http://[::ffff:127.0.0.1]/", "http://2130706433/",
		"http://0x7f.1/", "https://user@host/", "ftp://x/", "http://[fe80::1%25eth0]/", "http://host:0/", "http:x",
	} {
		f.Add(s)
	}
	c, err := New(Config{Resolver: &net.Resolver{
		PreferGo: true,
		Dial: func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("no DNS in this test")
		},
	}})
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, rawURL string) {
		if c.ValidateURL(context.Background(), rawURL) != nil {
			return
		}
		u, err := url.Parse(rawURL)
		if err != nil {
			t.Fatalf("%q accepted but does not parse: %v", rawURL, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.User != nil {
			t.Fatalf("%q accepted", rawURL)
		}
		addr, err := netip.ParseAddr(u.Hostname())
		if err != nil {
			// Only names the host's own files resolve can get here.
			return
		}
		if c.policy.check(addr) != nil {
			t.Fatalf("%q accepted with a blocked address", rawURL)
		}
	})
}
