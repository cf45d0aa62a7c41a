package safehttp

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// dnsServer is a tiny authoritative DNS server on 127.0.0.1 for tests:
// enough of RFC 1035 to answer the A and AAAA questions Go's resolver asks.
// Unknown names get NXDOMAIN. Every test resolver talks only to it, so no
// test sends a DNS query anywhere else.
type dnsServer struct {
	conn net.PacketConn

	mu      sync.Mutex
	answers map[string]func() []netip.Addr // lower-case name without trailing dot
}

func newDNSServer(t *testing.T) *dnsServer {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &dnsServer{conn: conn, answers: map[string]func() []netip.Addr{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.serve()
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	return s
}

// set makes name resolve to addrs.
func (s *dnsServer) set(name string, addrs ...string) {
	parsed := make([]netip.Addr, len(addrs))
	for i, a := range addrs {
		parsed[i] = netip.MustParseAddr(a)
	}
	s.setFunc(name, func() []netip.Addr { return parsed })
}

// setFunc makes name resolve to whatever answer returns at query time.
func (s *dnsServer) setFunc(name string, answer func() []netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers[strings.ToLower(name)] = answer
}

// resolver returns a Go resolver whose every query goes to this server.
func (s *dnsServer) resolver() *net.Resolver {
	addr := s.conn.LocalAddr().String()
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			if network != "udp" {
				return nil, errors.New("test DNS server speaks UDP only")
			}
			var d net.Dialer
			return d.DialContext(ctx, "udp", addr)
		},
	}
}

func (s *dnsServer) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := s.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		if resp := s.answer(buf[:n]); resp != nil {
			_, _ = s.conn.WriteTo(resp, from)
		}
	}
}

const (
	dnsTypeA    = 1
	dnsTypeAAAA = 28
)

// answer builds the response to one query, or nil to drop it.
func (s *dnsServer) answer(q []byte) []byte {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil
	}
	// Question: labels, then type and class.
	var labels []string
	off := 12
	for {
		if off >= len(q) {
			return nil
		}
		l := int(q[off])
		off++
		if l == 0 {
			break
		}
		if l > 63 || off+l > len(q) {
			return nil
		}
		labels = append(labels, string(q[off:off+l]))
		off += l
	}
	if off+4 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[off : off+2])
	question := q[12 : off+4]

	s.mu.Lock()
	answer, known := s.answers[strings.ToLower(strings.Join(labels, "."))]
	s.mu.Unlock()

	resp := make([]byte, 12, 512)
	copy(resp[0:2], q[0:2])                           // id
	flags := uint16(0x8000 | 0x0400 | 0x0080)         // QR, AA, RA
	flags |= binary.BigEndian.Uint16(q[2:4]) & 0x0100 // RD copied
	binary.BigEndian.PutUint16(resp[4:6], 1)          // QDCOUNT
	resp = append(resp, question...)
	if !known {
		binary.BigEndian.PutUint16(resp[2:4], flags|3) // NXDOMAIN
		return resp
	}
	binary.BigEndian.PutUint16(resp[2:4], flags)
	var count uint16
	for _, a := range answer() {
		var rdata []byte
		switch {
		case qtype == dnsTypeA && a.Is4():
			b := a.As4()
			rdata = b[:]
		case qtype == dnsTypeAAAA && a.Is6():
			b := a.As16()
			rdata = b[:]
		default:
			continue
		}
		resp = append(resp, 0xc0, 12) // name: pointer to the question
		resp = binary.BigEndian.AppendUint16(resp, qtype)
		resp = binary.BigEndian.AppendUint16(resp, 1) // class IN
		resp = binary.BigEndian.AppendUint32(resp, 0) // TTL
		resp = binary.BigEndian.AppendUint16(resp, uint16(len(rdata)))
		resp = append(resp, rdata...)
		count++
	}
	binary.BigEndian.PutUint16(resp[6:8], count) // ANCOUNT
	return resp
}
