//go:build reliability

package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/pkg/events"
)

// clusterNode is one nats-server process of a three-node JetStream
// cluster on loopback (sync_interval: always, like every server eventline
// runs against).
type clusterNode struct {
	name, conf string
	port       int
	cmd        *exec.Cmd
	exited     chan struct{}
}

func startNATSCluster(t *testing.T) []*clusterNode {
	t.Helper()
	bin := testenv.NATSServerBinary(t)
	dir := t.TempDir()
	nodes := make([]*clusterNode, 3)
	routePorts := make([]int, 3)
	for i := range nodes {
		nodes[i] = &clusterNode{name: fmt.Sprintf("n%d", i+1), port: mustFreePort(t)}
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
`, n.name, n.port, filepath.Join(dir, n.name), routePorts[i], strings.Join(routes, ", "))
		require.NoError(t, os.WriteFile(n.conf, []byte(conf), 0o600))
		n.start(t, bin)
		t.Cleanup(func() { n.kill() })
	}
	// JetStream answers once the cluster has a meta leader.
	url := clusterURL(nodes)
	testenv.Poll(t, time.Minute, "the JetStream cluster has a meta leader", func() bool {
		nc, err := nats.Connect(url)
		if err != nil {
			return false
		}
		defer nc.Close()
		m, err := nc.Request("$JS.API.INFO", nil, time.Second)
		return err == nil && !strings.Contains(string(m.Data), `"error"`)
	})
	return nodes
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
	require.NoError(t, n.cmd.Start())
	n.exited = make(chan struct{})
	cmd, exited := n.cmd, n.exited
	go func() { _ = cmd.Wait(); close(exited) }()
	testenv.Poll(t, 30*time.Second, n.name+" accepts connections", func() bool {
		nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", n.port), nats.Timeout(time.Second))
		if err == nil {
			nc.Close()
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
func streamLeader(t *testing.T, url string) string {
	t.Helper()
	nc, err := nats.Connect(url)
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
	nodes := startNATSCluster(t)
	url := clusterURL(nodes)
	f.s = startSystem(t, systemConfig{NATSURL: url, Env: []string{"STREAM_REPLICAS=3"}})
	f.l = startLoad(t, f.s, loadConfig{Rate: 1000, Batch: 20})
	f.l.waitAcked(5000, time.Minute)

	leader := streamLeader(t, url)
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
		nc, err := nats.Connect(url)
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
