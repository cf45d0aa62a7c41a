//go:build reliability

package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

// clusterNode is one nats-server process of a three-node JetStream
// cluster on loopback (sync_interval: always, like every server eventline
// runs against), with the shipped identities (deploy/nats/auth.conf).
type clusterNode struct {
	name, conf string
	port       int
	env        []string // the identities' passwords
	cmd        *exec.Cmd
	exited     chan struct{}
}

// natsCluster is three nodes and the identities' passwords.
type natsCluster struct {
	nodes     []*clusterNode
	passwords map[string]string
}

func startNATSCluster(t *testing.T) natsCluster {
	t.Helper()
	bin := testenv.NATSServerBinary(t)
	dir := t.TempDir()
	shipped, err := testenv.ShippedAuthConf()
	require.NoError(t, err)
	auth, err := os.ReadFile(shipped)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "auth.conf"), auth, 0o600))
	passwords := map[string]string{}
	var env []string
	for _, name := range (natsauth.Config{}).RenderedNames() {
		passwords[name] = name + "-" + nuid.Next()
		env = append(env, natsauth.PasswordEnv(name)+"="+passwords[name])
	}
	nodes := make([]*clusterNode, 3)
	routePorts := make([]int, 3)
	for i := range nodes {
		nodes[i] = &clusterNode{name: fmt.Sprintf("n%d", i+1), port: mustFreePort(t), env: env}
		routePorts[i] = mustFreePort(t)
	}
	var routes []string
	for _, p := range routePorts {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	for i, n := range nodes {
		n.conf = filepath.Join(dir, n.name+".conf")
		conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
jetstream { store_dir: %q, sync_interval: always }
cluster { name: eventline, listen: 127.0.0.1:%d, routes: [%s] }
include ./auth.conf
`, n.name, n.port, filepath.Join(dir, n.name), routePorts[i], strings.Join(routes, ", "))
		require.NoError(t, os.WriteFile(n.conf, []byte(conf), 0o600))
		n.start(t, bin)
		t.Cleanup(func() { n.kill() })
	}
	// JetStream answers once the cluster has a meta leader.
	url := clusterURL(nodes)
	testenv.Poll(t, time.Minute, "the JetStream cluster has a meta leader", func() bool {
		nc, err := adminConnect(url, passwords)
		if err != nil {
			return false
		}
		defer nc.Close()
		m, err := nc.Request("$JS.API.INFO", nil, time.Second)
		return err == nil && !strings.Contains(string(m.Data), `"error"`)
	})
	return natsCluster{nodes: nodes, passwords: passwords}
}

func clusterURL(nodes []*clusterNode) string {
	var urls []string
	for _, n := range nodes {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", n.port))
	}
	return strings.Join(urls, ",")
}

func (n *clusterNode) start(t *testing.T, bin string) {
	t.Helper()
	n.cmd = exec.Command(bin, "-c", n.conf)
	n.cmd.Env = append(os.Environ(), n.env...)
	require.NoError(t, n.cmd.Start())
	n.exited = make(chan struct{})
	cmd, exited := n.cmd, n.exited
	go func() { _ = cmd.Wait(); close(exited) }()
	testenv.Poll(t, 30*time.Second, n.name+" accepts connections", func() bool {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", n.port), time.Second)
		if err == nil {
			_ = conn.Close()
		}
		return err == nil
	})
}

func (n *clusterNode) kill() {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
	n.cmd = nil
}

// streamLeader is the server name leading the EVENTS stream.
func streamLeader(t *testing.T, url string, passwords map[string]string) string {
	t.Helper()
	nc, err := adminConnect(url, passwords)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, events.StreamName)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	require.NotNil(t, info.Cluster)
	require.Equal(t, 3, info.Config.Replicas)
	b, _ := json.Marshal(info.Cluster)
	t.Logf("EVENTS cluster: %s", b)
	return info.Cluster.Leader
}

// TestClusterLosesLeader runs a three-node NATS cluster with the EVENTS
// stream at three replicas, and SIGKILLs the node leading the stream under
// load; it comes back 10 s later. Services are not restarted.
func TestClusterLosesLeader(t *testing.T) {
	f := newFaultRun(t, "3-node NATS cluster, R3 stream: SIGKILL the stream leader under load, back after 10 s")
	cluster := startNATSCluster(t)
	nodes := cluster.nodes
	url := clusterURL(nodes)
	f.s = startSystem(t, systemConfig{NATSURL: url, NATSPasswords: cluster.passwords, Env: []string{"STREAM_REPLICAS=3"}})
	f.l = startLoad(t, f.s, loadConfig{Rate: 1000, Batch: 20})
	f.l.waitAcked(5000, time.Minute)

	leader := streamLeader(t, url, cluster.passwords)
	var victim *clusterNode
	for _, n := range nodes {
		if n.name == leader {
			victim = n
		}
	}
	require.NotNil(t, victim, "leader %q is none of the nodes", leader)
	failed, acked := f.l.failures(), f.l.ackedCount()
	killed := time.Now()
	victim.kill()
	// A new leader is elected among the two left.
	var newLeader string
	testenv.Poll(t, 30*time.Second, "a new stream leader", func() bool {
		nc, err := adminConnect(url, cluster.passwords)
		if err != nil {
			return false
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, events.StreamName)
		if err != nil {
			return false
		}
		info, err := s.Info(ctx)
		if err != nil || info.Cluster == nil || info.Cluster.Leader == "" || info.Cluster.Leader == leader {
			return false
		}
		newLeader = info.Cluster.Leader
		return true
	})
	elected := time.Since(killed)
	time.Sleep(10*time.Second - elected)
	victim.start(t, testenv.NATSServerBinary(t))
	f.clear()
	f.note("killed leader %s; %s elected after %.1fs; while it was gone %d events were acknowledged and %d requests failed and were re-sent",
		leader, newLeader, elected.Seconds(), f.l.ackedCount()-acked, f.l.failures()-failed)
	f.l.waitAcked(f.l.ackedCount()+5000, 2*time.Minute)
	f.finish(3 * time.Minute)
}
