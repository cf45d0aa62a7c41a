// Package safehttp is the HTTP client eventline delivers webhooks with: the
// URLs are chosen by tenants, so every request must be kept from reaching
// the machines around eventline (server-side request forgery).
//
// Two checks, one policy:
//
//   - [Client.ValidateURL] runs when an endpoint is created or changed. It
//     refuses URLs that are not plain http/https, that carry credentials,
//     that spell an IPv4 address in a legacy numeric form, or whose host
//     resolves to any address outside the public internet, and says what
//     was wrong.
//   - The dialer of [Client.Do] checks the address of every connection it
//     opens, after DNS resolution and before any packet is sent. This is
//     the check that counts: a name that resolved to a public address at
//     create time may resolve to 127.0.0.1 at delivery time (DNS
//     rebinding), and the dialer sees the address actually connected to.
//
// The policy refuses loopback, private, link-local (cloud metadata),
// carrier-grade NAT, multicast, documentation, benchmarking and reserved
// ranges, and the IPv6 forms that carry them (IPv4-mapped, NAT64, 6to4,
// Teredo); see blockedRanges for the table. The operator may allow private
// destinations for local use: [Config.AllowPrivate] turns the policy off,
// [Config.AllowCIDRs] lets chosen ranges through.
//
// Deliveries follow docs/contract.md §3: redirects are never followed (a 3xx is
// returned as the response, and is a failure), at most
// [Config.MaxResponseBytes] of the body is read, and the whole exchange is
// bounded by [Config.Timeout]. [Classify] turns the outcome of an attempt
// into the [ErrorClass] recorded in the delivery log.
package safehttp
