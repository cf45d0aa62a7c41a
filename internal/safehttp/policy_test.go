package safehttp

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPolicyBlocks(t *testing.T) {
	t.Parallel()
	p, err := newPolicy(false, nil)
	require.NoError(t, err)

	tests := []struct {
		addr   string
		reason string
	}{
		{"0.0.0.0", `a "this network" address`},
		{"0.1.2.3", `a "this network" address`},
		{"10.0.0.1", "a private address"},
		{"10.255.255.255", "a private address"},
		{"100.64.0.1", "a carrier-grade NAT address"},
		{"100.100.100.200", "a carrier-grade NAT address"},
		{"100.127.255.255", "a carrier-grade NAT address"},
		{"127.0.0.1", "a loopback address"},
		{"127.255.255.254", "a loopback address"},
		{"168.63.129.16", "a cloud platform address"},
		{"169.254.169.254", "a link-local address"},
		{"169.254.170.2", "a link-local address"},
		{"172.16.0.1", "a private address"},
		{"172.31.255.255", "a private address"},
		{"192.0.0.1", "an IETF protocol assignment address"},
		{"192.0.0.192", "an IETF protocol assignment address"},
		{"192.0.2.1", "a documentation address"},
		{"192.31.196.1", "an AS112 address"},
		{"192.52.193.1", "an AMT relay address"},
		{"192.88.99.1", "a 6to4 relay address"},
		{"192.168.1.1", "a private address"},
		{"192.175.48.1", "an AS112 address"},
		{"198.18.0.1", "a benchmarking address"},
		{"198.19.255.255", "a benchmarking address"},
		{"198.51.100.1", "a documentation address"},
		{"203.0.113.1", "a documentation address"},
		{"224.0.0.1", "a multicast address"},
		{"239.255.255.250", "a multicast address"},
		{"240.0.0.1", "a reserved address"},
		{"255.255.255.254", "a reserved address"},
		{"255.255.255.255", "the broadcast address"},
		// IPv4-mapped: unmapped, then checked as IPv4.
		{"::ffff:127.0.0.1", "a loopback address"},
		{"::ffff:169.254.169.254", "a link-local address"},
		{"::ffff:10.0.0.1", "a private address"},
		{"::", "the unspecified address"},
		{"::1", "a loopback address"},
		{"::127.0.0.1", "an IPv4-compatible address"},
		{"::169.254.169.254", "an IPv4-compatible address"},
		{"64:ff9b::7f00:1", "the NAT64 form of 127.0.0.1, a loopback address"},
		{"64:ff9b::a9fe:a9fe", "the NAT64 form of 169.254.169.254, a link-local address"},
		{"64:ff9b::808:808", "a NAT64 address"}, // 8.8.8.8: refused unless allow-listed
		{"64:ff9b:1::5db8:d822", "a NAT64 local-use address"},
		{"100::1", "a discard-only address"},
		{"2001:0:a9fe:a9fe::", "a Teredo address"},
		{"2001:1::1", "an IETF protocol assignment address"},
		{"2001:2::1", "an IETF protocol assignment address"},
		{"2001:20::1", "an IETF protocol assignment address"},
		{"2001:db8::1", "a documentation address"},
		{"2002:7f00:1::", "a 6to4 address"},
		{"2002:a9fe:a9fe::", "a 6to4 address"},
		{"2620:4f:8000::1", "an AS112 address"},
		{"3fff::1", "a documentation address"},
		{"5f00::1", "an SRv6 address"},
		{"fc00::1", "a unique-local (private) address"},
		{"fd00:ec2::254", "a unique-local (private) address"},
		{"fe80::1", "a link-local address"},
		{"fe80::1%eth0", "a link-local address"},
		{"fec0::1", "a site-local address"},
		{"ff02::1", "a multicast address"},
		{"::ffff:0:7f00:1", "outside the IPv6 global unicast range (2000::/3)"}, // SIIT
		{"1::1", "outside the IPv6 global unicast range (2000::/3)"},
		{"4000::1", "outside the IPv6 global unicast range (2000::/3)"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			t.Parallel()
			err := p.check(netip.MustParseAddr(tt.addr))
			require.ErrorIs(t, err, ErrBlocked)
			var blocked *BlockedError
			require.ErrorAs(t, err, &blocked)
			require.Equal(t, tt.reason, blocked.Reason)
			require.Contains(t, err.Error(), "WEBHOOK_ALLOW_PRIVATE")
		})
	}
}

func TestPolicyBlocksEveryTableRange(t *testing.T) {
	t.Parallel()
	p, err := newPolicy(false, nil)
	require.NoError(t, err)
	for _, b := range blockedRanges {
		first := b.prefix.Addr()
		last := lastAddr(b.prefix)
		require.ErrorIs(t, p.check(first), ErrBlocked, "%s (%s)", first, b.prefix)
		require.ErrorIs(t, p.check(last), ErrBlocked, "%s (%s)", last, b.prefix)
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func TestPolicyAllowsPublic(t *testing.T) {
	t.Parallel()
	p, err := newPolicy(false, nil)
	require.NoError(t, err)
	for _, a := range []string{
		"1.1.1.1", "8.8.8.8", "93.184.216.34",
		"9.255.255.255", "11.0.0.0", // around 10/8
		"100.63.255.255", "100.128.0.0", // around 100.64/10
		"126.255.255.255", "128.0.0.0", // around 127/8
		"172.15.255.255", "172.32.0.0", // around 172.16/12
		"192.167.255.255", "192.169.0.0", // around 192.168/16
		"198.17.255.255", "198.20.0.0", // around 198.18/15
		"223.255.255.255", // below multicast
		"::ffff:8.8.8.8",  // IPv4-mapped public
		"2606:4700:4700::1111", "2a00:1450:4001::1", "2001:4860:4860::8888",
		"2001:200::1", // just past 2001::/23
	} {
		require.NoError(t, p.check(netip.MustParseAddr(a)), a)
	}
}

func TestPolicyAllowList(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		allow   []string
		allowed []string
		blocked []string
	}{
		{
			name:    "IPv4 range",
			allow:   []string{"10.0.0.0/8"},
			allowed: []string{"10.1.2.3", "::ffff:10.1.2.3", "8.8.8.8"},
			blocked: []string{"127.0.0.1", "169.254.169.254", "172.16.0.1"},
		},
		{
			name:    "IPv4-mapped range means its IPv4 form",
			allow:   []string{"::ffff:10.0.0.0/104"},
			allowed: []string{"10.1.2.3", "::ffff:10.1.2.3"},
			blocked: []string{"172.16.0.1", "127.0.0.1"},
		},
		{
			name:    "one address",
			allow:   []string{"192.168.1.10/32"},
			allowed: []string{"192.168.1.10"},
			blocked: []string{"192.168.1.11"},
		},
		{
			name:    "unmasked prefix",
			allow:   []string{"127.0.0.1/8"},
			allowed: []string{"127.0.0.1", "127.9.9.9"},
			blocked: []string{"::1"},
		},
		{
			name:    "IPv6 range",
			allow:   []string{"fd00:1234::/32"},
			allowed: []string{"fd00:1234::1"},
			blocked: []string{"fd00:1235::1", "::1"},
		},
		{
			name:    "NAT64 allowed still checks the IPv4 inside",
			allow:   []string{"64:ff9b::/96"},
			allowed: []string{"64:ff9b::808:808"},
			blocked: []string{"64:ff9b::7f00:1", "64:ff9b::a00:1"},
		},
		{
			name:    "NAT64 and the private range inside",
			allow:   []string{"64:ff9b::/96", "10.0.0.0/8"},
			allowed: []string{"64:ff9b::a00:1"},
			blocked: []string{"64:ff9b::7f00:1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var allow []netip.Prefix
			for _, a := range tt.allow {
				allow = append(allow, netip.MustParsePrefix(a))
			}
			p, err := newPolicy(false, allow)
			require.NoError(t, err)
			for _, a := range tt.allowed {
				require.NoError(t, p.check(netip.MustParseAddr(a)), a)
			}
			for _, a := range tt.blocked {
				require.ErrorIs(t, p.check(netip.MustParseAddr(a)), ErrBlocked, a)
			}
		})
	}
}

func TestPolicyAllowPrivate(t *testing.T) {
	t.Parallel()
	p, err := newPolicy(true, nil)
	require.NoError(t, err)
	for _, a := range []string{"127.0.0.1", "::1", "10.0.0.1", "169.254.169.254", "fe80::1%eth0", "64:ff9b::7f00:1"} {
		require.NoError(t, p.check(netip.MustParseAddr(a)), a)
	}
	require.ErrorIs(t, p.check(netip.Addr{}), ErrBlocked, "the zero Addr is never dialled")
}

func TestPolicyRejectsInvalidPrefix(t *testing.T) {
	t.Parallel()
	_, err := newPolicy(false, []netip.Prefix{{}})
	require.Error(t, err)
}

func TestPolicyControl(t *testing.T) {
	t.Parallel()
	p, err := newPolicy(false, nil)
	require.NoError(t, err)
	tests := []struct {
		network, address string
		allowed          bool
	}{
		{"tcp4", "93.184.216.34:443", true},
		{"tcp6", "[2606:4700:4700::1111]:443", true},
		{"tcp4", "93.184.216.34:8443", true}, // any port
		{"tcp4", "127.0.0.1:80", false},
		{"tcp6", "[::1]:80", false},
		{"tcp6", "[fe80::1%eth0]:80", false},
		{"udp4", "93.184.216.34:53", false},
		{"tcp4", "not-an-address", false},
	}
	for _, tt := range tests {
		err := p.control(tt.network, tt.address, nil)
		if tt.allowed {
			require.NoError(t, err, "%s %s", tt.network, tt.address)
		} else {
			require.ErrorIs(t, err, ErrBlocked, "%s %s", tt.network, tt.address)
		}
	}
}
