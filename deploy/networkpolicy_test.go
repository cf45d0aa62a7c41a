package deploy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

// natsServerPods and natsBoxPods are the labels the official NATS chart
// (1.x, release "nats") puts on its server and nats-box pods.
var (
	natsServerPods = map[string]string{"app.kubernetes.io/name": "nats", "app.kubernetes.io/instance": "nats", "app.kubernetes.io/component": "nats"}
	natsBoxPods    = map[string]string{"app.kubernetes.io/name": "nats", "app.kubernetes.io/instance": "nats", "app.kubernetes.io/component": "nats-box"}
	eventlinePods  = map[string]string{"app.kubernetes.io/part-of": "eventline", "app.kubernetes.io/name": "projector"}
	kedaPods       = map[string]string{"app.kubernetes.io/name": "keda-operator"}
)

// peer is a pod in a namespace trying to connect.
type peer struct {
	namespace string
	labels    map[string]string
}

var (
	fromEventline  = peer{"eventline", eventlinePods}
	fromNATS       = peer{"nats", natsServerPods}
	fromNATSBox    = peer{"nats", natsBoxPods}
	fromKEDA       = peer{"keda", kedaPods}
	fromElsewhere  = peer{"eventline", map[string]string{"app.kubernetes.io/name": "something-else"}}
	fromOtherSpace = peer{"default", eventlinePods} // eventline's labels, another namespace
	fromNATSSpace  = peer{"nats", map[string]string{"app": "debug"}}
)

// loadPolicy decodes a NetworkPolicy strictly (unknown fields fail).
func loadPolicy(t *testing.T, file string) networkingv1.NetworkPolicy {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("networkpolicies", file))
	require.NoError(t, err)
	js, err := yaml.YAMLToJSON(raw)
	require.NoError(t, err)
	var p networkingv1.NetworkPolicy
	strict(t, js, &p)
	require.Equal(t, "networking.k8s.io/v1", p.APIVersion)
	require.Equal(t, "NetworkPolicy", p.Kind)
	require.Equal(t, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}, p.Spec.PolicyTypes, "%s restricts ingress", file)
	return p
}

func matches(sel map[string]string, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// admits evaluates the policy, applied in namespace ns, as Kubernetes does
// for a TCP connection from p to port of a pod it selects.
func admits(pol networkingv1.NetworkPolicy, ns string, p peer, port int) bool {
	for _, rule := range pol.Spec.Ingress {
		portOK := len(rule.Ports) == 0
		for _, rp := range rule.Ports {
			if rp.Port != nil && rp.Port.IntValue() == port {
				portOK = true
			}
		}
		if !portOK {
			continue
		}
		if len(rule.From) == 0 {
			return true
		}
		for _, f := range rule.From {
			nsOK := p.namespace == ns // a bare podSelector: the policy's own namespace
			if f.NamespaceSelector != nil {
				nsOK = matches(f.NamespaceSelector.MatchLabels, map[string]string{"kubernetes.io/metadata.name": p.namespace})
			}
			podOK := f.PodSelector == nil || matches(f.PodSelector.MatchLabels, p.labels)
			if nsOK && podOK && f.IPBlock == nil {
				return true
			}
		}
	}
	return false
}

// TestNATSNetworkPolicy: the NATS servers take clients only from
// eventline's pods (and nats-box next to them), routes only from each
// other, monitoring only from KEDA; nothing else reaches any port.
func TestNATSNetworkPolicy(t *testing.T) {
	t.Parallel()
	pol := loadPolicy(t, "nats.yaml")
	require.Equal(t, "nats", pol.Namespace, "the namespace deploy/nats/values.yaml installs NATS in")
	require.True(t, matches(pol.Spec.PodSelector.MatchLabels, natsServerPods), "selects the chart's server pods")
	require.False(t, matches(pol.Spec.PodSelector.MatchLabels, natsBoxPods), "not nats-box")
	for _, rule := range pol.Spec.Ingress {
		require.NotEmpty(t, rule.From, "every rule names who")
		require.NotEmpty(t, rule.Ports, "every rule names its ports")
	}
	for _, tc := range []struct {
		from peer
		port int
		want bool
	}{
		{fromEventline, 4222, true}, {fromNATSBox, 4222, true}, {fromNATS, 6222, true}, {fromKEDA, 8222, true},
		{fromEventline, 6222, false}, {fromEventline, 8222, false}, {fromKEDA, 4222, false}, {fromNATSBox, 6222, false},
		{fromElsewhere, 4222, false}, {fromOtherSpace, 4222, false}, {fromNATSSpace, 4222, false}, {fromNATSSpace, 8222, false},
	} {
		require.Equal(t, tc.want, admits(pol, pol.Namespace, tc.from, tc.port), "%+v to port %d", tc.from, tc.port)
	}
}

// TestPostgresNetworkPolicy: Postgres takes connections only from
// eventline's pods and its own peers.
func TestPostgresNetworkPolicy(t *testing.T) {
	t.Parallel()
	pol := loadPolicy(t, "postgres.yaml")
	require.Empty(t, pol.Namespace, "applied in Postgres's own namespace")
	pg := peer{"postgres", pol.Spec.PodSelector.MatchLabels}
	require.NotEmpty(t, pg.labels)
	for _, tc := range []struct {
		from peer
		want bool
	}{{fromEventline, true}, {pg, true}, {fromElsewhere, false}, {fromOtherSpace, false}, {fromKEDA, false}, {fromNATS, false}} {
		require.Equal(t, tc.want, admits(pol, "postgres", tc.from, 5432), "%+v", tc.from)
	}
}

// TestEventlinePodsAreAdmitted: every pod eventline runs (the services and
// the migrate Job) carries the labels the policies admit, and reaches NATS
// in the namespace the NATS policy protects.
func TestEventlinePodsAreAdmitted(t *testing.T) {
	t.Parallel()
	b := build(t)
	nats := loadPolicy(t, "nats.yaml")
	pods := map[string]map[string]string{}
	for name, d := range b.deployments {
		pods[name] = d.Spec.Template.Labels
	}
	for name, j := range b.jobs {
		pods[name] = j.Spec.Template.Labels
	}
	require.NotEmpty(t, pods)
	for name, labels := range pods {
		require.True(t, admits(nats, nats.Namespace, peer{"eventline", labels}, 4222), "%s's pods reach NATS", name)
	}
	host := strings.TrimPrefix(b.configMaps["eventline"].Data["NATS_URL"], "nats://")
	require.True(t, strings.HasPrefix(host, "nats."+nats.Namespace+".svc"), "NATS_URL %s is in the policy's namespace", host)
	for name, so := range b.scaledObjects {
		for _, tr := range so.Spec.Triggers {
			if tr.Type == "nats-jetstream" {
				require.Contains(t, tr.Metadata["natsServerMonitoringEndpoint"], "."+nats.Namespace+".svc", name)
			}
		}
	}
}
