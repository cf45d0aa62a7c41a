package safehttp

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"
)

// ErrBlocked is matched (errors.Is) by every error that refuses a
// destination address: a *BlockedError, or a connection on a network other
// than TCP.
var ErrBlocked = errors.New("destination address is not allowed")

// allowHint tells a tenant, and the operator reading the same message, how
// to get past a refusal.
const allowHint = "webhooks must reach a public address, or the operator must set WEBHOOK_ALLOW_PRIVATE or allow-list the range"

// BlockedError reports an address the policy refuses. It matches
// [ErrBlocked].
type BlockedError struct {
	// Addr is the refused address (IPv4-mapped IPv6 addresses unmapped).
	Addr netip.Addr
	// Range is the blocked range Addr is in.
	Range netip.Prefix
	// Reason says what the range is, e.g. "a loopback address".
	Reason string
}

func (e *BlockedError) Error() string {
	return fmt.Sprintf("%s is %s; %s", e.Addr, e.Reason, allowHint)
}

// Is makes errors.Is(err, ErrBlocked) true.
func (e *BlockedError) Is(target error) bool { return target == ErrBlocked }

// blockedRange is one line of the table.
type blockedRange struct {
	prefix netip.Prefix
	reason string
}

func block(prefix, reason string) blockedRange {
	return blockedRange{prefix: netip.MustParsePrefix(prefix), reason: reason}
}

// blockedRanges is every range a webhook may not reach unless the operator
// allows it. The first match names the refusal, so narrow ranges come before
// the wider ones that contain them. Sources: the IANA IPv4 and IPv6
// special-purpose registries (the same list code.dny.dev/ssrf generates), and
// basecamp/surfguard, which adds the Azure wire server. IPv4-mapped IPv6
// addresses (::ffff:a.b.c.d) never reach the table: check unmaps them and
// checks the IPv4 address, which is what the kernel would connect to.
var blockedRanges = []blockedRange{
	// IPv4
	block("0.0.0.0/8", `a "this network" address`),               // RFC 791; 0.0.0.0 reaches the local host on Linux
	block("10.0.0.0/8", "a private address"),                     // RFC 1918
	block("100.64.0.0/10", "a carrier-grade NAT address"),        // RFC 6598 shared address space (Alibaba Cloud metadata 100.100.100.200)
	block("127.0.0.0/8", "a loopback address"),                   // RFC 1122
	block("168.63.129.16/32", "a cloud platform address"),        // Azure wire server (metadata, health), public space
	block("169.254.0.0/16", "a link-local address"),              // RFC 3927; cloud metadata 169.254.169.254, ECS credentials 169.254.170.2
	block("172.16.0.0/12", "a private address"),                  // RFC 1918
	block("192.0.0.0/24", "an IETF protocol assignment address"), // RFC 6890 (Oracle Cloud metadata 192.0.0.192)
	block("192.0.2.0/24", "a documentation address"),             // RFC 5737 TEST-NET-1
	block("192.31.196.0/24", "an AS112 address"),                 // RFC 7535
	block("192.52.193.0/24", "an AMT relay address"),             // RFC 7450
	block("192.88.99.0/24", "a 6to4 relay address"),              // RFC 7526 (deprecated anycast)
	block("192.168.0.0/16", "a private address"),                 // RFC 1918
	block("192.175.48.0/24", "an AS112 address"),                 // RFC 7534
	block("198.18.0.0/15", "a benchmarking address"),             // RFC 2544
	block("198.51.100.0/24", "a documentation address"),          // RFC 5737 TEST-NET-2
	block("203.0.113.0/24", "a documentation address"),           // RFC 5737 TEST-NET-3
	block("224.0.0.0/4", "a multicast address"),                  // RFC 5771
	block("255.255.255.255/32", "the broadcast address"),         // RFC 919
	block("240.0.0.0/4", "a reserved address"),                   // RFC 1112
	// IPv6
	block("::/128", "the unspecified address"),                // RFC 4291
	block("::1/128", "a loopback address"),                    // RFC 4291
	block("::/96", "an IPv4-compatible address"),              // RFC 4291 (deprecated)
	block("64:ff9b::/96", "a NAT64 address"),                  // RFC 6052; the IPv4 address inside is checked first
	block("64:ff9b:1::/48", "a NAT64 local-use address"),      // RFC 8215
	block("100::/64", "a discard-only address"),               // RFC 6666
	block("2001::/32", "a Teredo address"),                    // RFC 4380; tunnels to an IPv4 address
	block("2001::/23", "an IETF protocol assignment address"), // RFC 2928 (ORCHID, benchmarking 2001:2::/48, ...)
	block("2001:db8::/32", "a documentation address"),         // RFC 3849
	block("2002::/16", "a 6to4 address"),                      // RFC 3056; tunnels to an IPv4 address
	block("2620:4f:8000::/48", "an AS112 address"),            // RFC 7534
	block("3fff::/20", "a documentation address"),             // RFC 9637
	block("5f00::/16", "an SRv6 address"),                     // RFC 9602
	block("fc00::/7", "a unique-local (private) address"),     // RFC 4193; AWS IMDSv6 fd00:ec2::254
	block("fe80::/10", "a link-local address"),                // RFC 4291
	block("fec0::/10", "a site-local address"),                // RFC 3879 (deprecated)
	block("ff00::/8", "a multicast address"),                  // RFC 4291
	// Every other IPv6 address outside 2000::/3 is refused too: see check.
}

var (
	// ipv6GlobalUnicast is the only IPv6 space that is "the internet"
	// (RFC 4291); anything outside it is refused even if the table does not
	// name it, so a newly assigned special range fails closed.
	ipv6GlobalUnicast = netip.MustParsePrefix("2000::/3")
	// nat64 embeds the IPv4 destination in its low 32 bits (RFC 6052).
	nat64 = netip.MustParsePrefix("64:ff9b::/96")
)

// policy decides which addresses may be connected to. It is immutable and
// safe for concurrent use.
type policy struct {
	allowAll bool
	allow    []netip.Prefix
}

func newPolicy(allowAll bool, allow []netip.Prefix) (policy, error) {
	p := policy{allowAll: allowAll}
	for _, prefix := range allow {
		if !prefix.IsValid() {
			return policy{}, fmt.Errorf("allow-list entry %q is not a valid CIDR", prefix)
		}
		// Addresses are unmapped before they are checked, so an IPv4-mapped
		// prefix (::ffff:10.0.0.0/104) is turned into its IPv4 form, else it
		// would never match.
		if a := prefix.Addr(); a.Is4In6() && prefix.Bits() >= 96 {
			prefix = netip.PrefixFrom(a.Unmap(), prefix.Bits()-96)
		}
		p.allow = append(p.allow, prefix.Masked())
	}
	return p, nil
}

// check returns nil if addr may be connected to, else a *BlockedError.
func (p policy) check(addr netip.Addr) error {
	// Prefix.Contains never matches a zoned address, and an IPv4-mapped
	// address is an IPv4 address to the kernel.
	addr = addr.WithZone("").Unmap()
	if !addr.IsValid() {
		return &BlockedError{Addr: addr, Reason: "not an IP address"}
	}
	if p.allowAll {
		return nil
	}
	if nat64.Contains(addr) {
		// Allowing NAT64 (for an IPv6-only host behind DNS64) must not
		// allow reaching 127.0.0.1 through it.
		a16 := addr.As16()
		inner := netip.AddrFrom4([4]byte(a16[12:]))
		if err := p.check(inner); err != nil {
			var b *BlockedError
			if errors.As(err, &b) {
				return &BlockedError{Addr: addr, Range: b.Range, Reason: fmt.Sprintf("the NAT64 form of %s, %s", inner, b.Reason)}
			}
			return err
		}
	}
	for _, prefix := range p.allow {
		if prefix.Contains(addr) {
			return nil
		}
	}
	for _, b := range blockedRanges {
		if b.prefix.Contains(addr) {
			return &BlockedError{Addr: addr, Range: b.prefix, Reason: b.reason}
		}
	}
	if addr.Is6() && !ipv6GlobalUnicast.Contains(addr) {
		return &BlockedError{Addr: addr, Range: ipv6GlobalUnicast, Reason: "outside the IPv6 global unicast range (2000::/3)"}
	}
	return nil
}

// control is the net.Dialer Control hook: it runs for every connection,
// with the resolved address about to be connected to, after the socket is
// created and before connect(2), so a refused address never sees a packet.
func (p policy) control(network, address string, _ syscall.RawConn) error {
	if network != "tcp4" && network != "tcp6" {
		return fmt.Errorf("%w: network %q (only TCP is used for webhooks)", ErrBlocked, network)
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot parse dial address %q: %w", ErrBlocked, address, err)
	}
	return p.check(ap.Addr())
}
