//go:build reliability

package reliability

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/testenv"
)

// proxy is an embedded toxiproxy TCP proxy in front of one upstream.
type proxy struct {
	p *toxiproxy.Proxy
}

func startProxy(t *testing.T, name, upstream string) *proxy {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, name, "127.0.0.1:0", upstream)
	require.NoError(t, p.Start())
	t.Cleanup(p.Stop)
	return &proxy{p: p}
}

// Addr is the proxy's listen address.
func (p *proxy) Addr() string { return p.p.Listen }

// add puts a toxic on both directions of every connection, current and
// future.
func (p *proxy) add(t *testing.T, typ string, attrs string) {
	t.Helper()
	for _, stream := range []string{"upstream", "downstream"} {
		_, err := p.p.Toxics.AddToxicJson(strings.NewReader(fmt.Sprintf(
			`{"name":%q,"type":%q,"stream":%q,"toxicity":1,"attributes":%s}`, typ+"_"+stream, typ, stream, attrs)))
		require.NoError(t, err)
	}
}

// clear removes every toxic.
func (p *proxy) clear() { p.p.Toxics.ResetToxics(context.Background()) }

// toxic is a network fault and how long it lasts.
type toxic struct {
	name, typ, attrs string
	hold             time.Duration
	what             string
}

var toxics = []toxic{
	{"latency", "latency", `{"latency":250,"jitter":100}`, 20 * time.Second, "latency 250 ± 100 ms each way for 20 s"},
	{"reset", "reset_peer", `{"timeout":0}`, 8 * time.Second, "reset_peer (TCP RST on every connection with traffic, new ones too) for 8 s"},
	{"blackhole", "timeout", `{"timeout":0}`, 15 * time.Second, "blackhole (timeout toxic: bytes dropped, connections left open) for 15 s"},
}

// TestNetworkNATS puts each toxic between every service and NATS.
func TestNetworkNATS(t *testing.T) {
	for _, tx := range toxics {
		t.Run(tx.name, func(t *testing.T) {
			f := newFaultRun(t, "services ↔ NATS: "+tx.what)
			p := testenv.StartNATSProcess(t)
			px := startProxy(t, "nats", fmt.Sprintf("127.0.0.1:%d", p.Port))
			f.s = startSystem(t, systemConfig{NATSURL: p.URL(), NATSPasswords: p.Passwords, SvcNATSURL: "nats://" + px.Addr()})
			runToxic(f, px, tx)
		})
	}
}

// TestNetworkPostgres puts each toxic between every service and Postgres.
func TestNetworkPostgres(t *testing.T) {
	for _, tx := range toxics {
		t.Run(tx.name, func(t *testing.T) {
			f := newFaultRun(t, "services ↔ Postgres: "+tx.what)
			p := testenv.StartNATSProcess(t)
			db := testenv.Database(t)
			up := dbHostPort(t, db)
			px := startProxy(t, "postgres", up)
			f.s = startSystem(t, systemConfig{NATSURL: p.URL(), NATSPasswords: p.Passwords, DBURL: db, SvcDBURL: strings.Replace(db, up, px.Addr(), 1)})
			runToxic(f, px, tx)
		})
	}
}

func runToxic(f *faultRun, px *proxy, tx toxic) {
	t := f.t
	f.l = startLoad(t, f.s, loadConfig{Rate: 1000, Batch: 20})
	f.l.waitAcked(5000, time.Minute)
	failed := f.l.failures()
	acked := f.l.ackedCount()
	px.add(t, tx.typ, tx.attrs)
	time.Sleep(tx.hold)
	px.clear()
	f.clear()
	f.note("during the fault: %d events acknowledged, %d requests failed and were re-sent", f.l.ackedCount()-acked, f.l.failures()-failed)
	f.l.waitAcked(f.l.ackedCount()+5000, 2*time.Minute)
	f.finish(3 * time.Minute)
}

// dbHostPort is the host:port of a postgres:// URL.
func dbHostPort(t *testing.T, url string) string {
	t.Helper()
	rest, ok := strings.CutPrefix(url, "postgres://")
	require.True(t, ok, url)
	if i := strings.Index(rest, "@"); i >= 0 {
		rest = rest[i+1:]
	}
	hp, _, _ := strings.Cut(rest, "/")
	require.NotEmpty(t, hp, url)
	return hp
}
