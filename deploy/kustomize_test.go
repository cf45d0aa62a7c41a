package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/eventline/eventline/internal/consume"
	"github.com/eventline/eventline/internal/natsauth"
	"github.com/eventline/eventline/internal/postgres"
	"github.com/eventline/eventline/internal/testenv"
	"github.com/eventline/eventline/internal/webhooker"
)

// scaledObject is the part of KEDA's keda.sh/v1alpha1 ScaledObject the
// manifests use; decoding rejects any other field.
type scaledObject struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		PollingInterval int32 `json:"pollingInterval"`
		CooldownPeriod  int32 `json:"cooldownPeriod"`
		MinReplicaCount int32 `json:"minReplicaCount"`
		MaxReplicaCount int32 `json:"maxReplicaCount"`
		Triggers        []struct {
			Type       string            `json:"type"`
			MetricType string            `json:"metricType,omitempty"`
			Metadata   map[string]string `json:"metadata"`
		} `json:"triggers"`
	} `json:"spec"`
}

// kedaPostgresKeys are the postgresql trigger's metadata fields the
// manifests may use (keda.sh/docs/scalers/postgresql).
var kedaPostgresKeys = []string{"connectionFromEnv", "query", "targetQueryValue", "activationTargetQueryValue"}

// requireBacklogTrigger: the webhooker's postgresql trigger reads a
// connection string its Deployment has, and its query runs on a migrated
// database and returns one integer: the deliveries due, claimed by no one.
func requireBacklogTrigger(t *testing.T, d appsv1.Deployment, typ string, md map[string]string) {
	t.Helper()
	require.Equal(t, "postgresql", typ)
	for k := range md {
		require.Contains(t, kedaPostgresKeys, k, "%s is not a postgresql trigger field", k)
	}
	require.Equal(t, "DATABASE_URL", md["connectionFromEnv"])
	c := d.Spec.Template.Spec.Containers[0]
	fromSecret := slices.ContainsFunc(c.EnvFrom, func(e corev1.EnvFromSource) bool { return e.SecretRef != nil && e.SecretRef.Name == "eventline" })
	require.True(t, fromSecret, "the webhooker gets DATABASE_URL from the eventline Secret, where KEDA reads it")
	require.Regexp(t, `^[1-9][0-9]*$`, md["targetQueryValue"])

	ctx := context.Background()
	pool, err := postgres.Open(ctx, testenv.Database(t))
	require.NoError(t, err)
	defer pool.Close()
	_, err = pool.Exec(ctx, `INSERT INTO webhook.due (delivery_id, tenant, due_at) VALUES ('d1', 'acme', now() - interval '1 minute'), ('d2', 'acme', now() + interval '1 minute')`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO webhook.chunks (tenant, event_id, event_seq, n, endpoint_ids, due_at) VALUES
		('acme', 'e1', 1, 0, '{ep1,ep2,ep3}', now() - interval '1 minute'), ('acme', 'e1', 1, 1, '{ep4}', now() + interval '1 minute')`)
	require.NoError(t, err)
	var due int64
	require.NoError(t, pool.QueryRow(ctx, md["query"]).Scan(&due))
	require.Equal(t, int64(4), due, "one due row and a chunk of three endpoints due now; the others are claimed (due later)")
}

// kustomizeKeys are the nats-jetstream trigger's metadata fields
// (keda.sh/docs/scalers/nats-jetstream).
var kedaNATSKeys = []string{"natsServerMonitoringEndpoint", "account", "stream", "consumer", "lagThreshold", "activationLagThreshold", "useHttps"}

type built struct {
	deployments   map[string]appsv1.Deployment
	services      map[string]corev1.Service
	pdbs          map[string]policyv1.PodDisruptionBudget
	jobs          map[string]batchv1.Job
	configMaps    map[string]corev1.ConfigMap
	scaledObjects map[string]scaledObject
}

// strict decodes b into v, rejecting fields v does not have.
func strict(t *testing.T, b []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(v), "%s", b)
}

// build runs kustomize on deploy/base in-process and decodes every object
// strictly into its Kubernetes API type.
func build(t *testing.T) built {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), "base")
	require.NoError(t, err, "kustomize build deploy/base")
	out := built{deployments: map[string]appsv1.Deployment{}, services: map[string]corev1.Service{}, pdbs: map[string]policyv1.PodDisruptionBudget{},
		jobs: map[string]batchv1.Job{}, configMaps: map[string]corev1.ConfigMap{}, scaledObjects: map[string]scaledObject{}}
	for _, r := range m.Resources() {
		b, err := r.MarshalJSON()
		require.NoError(t, err)
		name := r.GetName()
		switch gvk := r.GetGvk(); gvk.Group + "/" + gvk.Version + "/" + gvk.Kind {
		case "apps/v1/Deployment":
			var d appsv1.Deployment
			strict(t, b, &d)
			out.deployments[name] = d
		case "/v1/Service":
			var s corev1.Service
			strict(t, b, &s)
			out.services[name] = s
		case "policy/v1/PodDisruptionBudget":
			var p policyv1.PodDisruptionBudget
			strict(t, b, &p)
			out.pdbs[name] = p
		case "batch/v1/Job":
			var j batchv1.Job
			strict(t, b, &j)
			out.jobs[name] = j
		case "/v1/ConfigMap":
			var c corev1.ConfigMap
			strict(t, b, &c)
			out.configMaps[name] = c
		case "keda.sh/v1alpha1/ScaledObject":
			var s scaledObject
			strict(t, b, &s)
			out.scaledObjects[name] = s
		default:
			t.Fatalf("unexpected object %s %s", gvk, name)
		}
	}
	return out
}

// TestKustomizeBase: a Deployment, Service and PDB per service with probes
// on the admin port, non-root and read-only, settings from the ConfigMap
// and Secret; the migrate Job; a KEDA ScaledObject per consumer on its own
// durable.
func TestKustomizeBase(t *testing.T) {
	t.Parallel()
	b := build(t)
	require.Len(t, b.deployments, len(services))
	for name, adminPort := range services {
		d, ok := b.deployments[name]
		require.True(t, ok, "Deployment %s", name)
		spec := d.Spec.Template.Spec
		require.Len(t, spec.Containers, 1)
		c := spec.Containers[0]
		require.Equal(t, []string{name}, c.Command)
		require.Equal(t, "ghcr.io/eventline/eventline:latest", c.Image, "the images transformer sets the image")

		ports := map[string]int32{}
		for _, p := range c.Ports {
			ports[p.Name] = p.ContainerPort
		}
		require.Equal(t, adminPort, fmt.Sprint(ports["admin"]), "%s admin port", name)
		require.NotNil(t, c.LivenessProbe, name)
		require.Equal(t, "/livez", c.LivenessProbe.HTTPGet.Path, name)
		require.Equal(t, "admin", c.LivenessProbe.HTTPGet.Port.String(), name)
		require.NotNil(t, c.ReadinessProbe, name)
		require.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path, name)
		require.Equal(t, "admin", c.ReadinessProbe.HTTPGet.Port.String(), name)

		require.False(t, c.Resources.Requests.Cpu().IsZero(), "%s requests CPU", name)
		require.False(t, c.Resources.Requests.Memory().IsZero(), "%s requests memory", name)
		require.False(t, c.Resources.Limits.Memory().IsZero(), "%s limits memory", name)

		require.True(t, *spec.SecurityContext.RunAsNonRoot, name)
		require.NotZero(t, *spec.SecurityContext.RunAsUser, name)
		require.False(t, *c.SecurityContext.AllowPrivilegeEscalation, name)
		require.True(t, *c.SecurityContext.ReadOnlyRootFilesystem, name)
		require.Equal(t, []corev1.Capability{"ALL"}, c.SecurityContext.Capabilities.Drop, name)
		require.GreaterOrEqual(t, *spec.TerminationGracePeriodSeconds, int64(35), "%s: longer than SHUTDOWN_TIMEOUT", name)

		var fromConfig, fromSecret bool
		for _, e := range c.EnvFrom {
			if e.ConfigMapRef != nil && e.ConfigMapRef.Name == "eventline" {
				fromConfig = true
			}
			if e.SecretRef != nil && e.SecretRef.Name == "eventline" {
				fromSecret = true
			}
		}
		require.True(t, fromConfig && fromSecret, "%s reads the ConfigMap and the Secret", name)
		requireNATSIdentity(t, c, name)
		require.Equal(t, "eventline", d.Spec.Template.Labels["app.kubernetes.io/part-of"], "%s's pods are the ones the NetworkPolicies admit", name)

		sel := d.Spec.Selector.MatchLabels
		require.Equal(t, sel, subset(d.Spec.Template.Labels, sel), "%s selector matches its pods", name)
		svc, ok := b.services[name]
		require.True(t, ok, "Service %s", name)
		require.Equal(t, sel, subset(d.Spec.Template.Labels, svc.Spec.Selector), "Service %s selects its pods", name)
		pdb, ok := b.pdbs[name]
		require.True(t, ok, "PodDisruptionBudget %s", name)
		require.Equal(t, sel, subset(d.Spec.Template.Labels, pdb.Spec.Selector.MatchLabels), "PDB %s selects its pods", name)
		require.NotNil(t, pdb.Spec.MaxUnavailable, "PDB %s", name)
		require.Equal(t, 1, pdb.Spec.MaxUnavailable.IntValue(), "PDB %s lets one pod go at a time", name)
	}

	job, ok := b.jobs["migrate"]
	require.True(t, ok, "the migrate Job")
	require.Equal(t, []string{"eventline", "migrate"}, job.Spec.Template.Spec.Containers[0].Command)
	require.True(t, *job.Spec.Template.Spec.SecurityContext.RunAsNonRoot)
	requireNATSIdentity(t, job.Spec.Template.Spec.Containers[0], natsauth.Admin) // it provisions the stream and durables
	require.Equal(t, "eventline", job.Spec.Template.Labels["app.kubernetes.io/part-of"], "the migrate Job reaches NATS and Postgres")

	cm := b.configMaps["eventline"]
	require.Equal(t, "3", cm.Data["STREAM_REPLICAS"], "the EVENTS stream is replicated on the 3-server NATS cluster")
	require.True(t, strings.HasPrefix(cm.Data["NATS_URL"], "nats://nats."), cm.Data["NATS_URL"])
	require.Contains(t, cm.Data, "OTEL_EXPORTER_OTLP_ENDPOINT")

	require.Len(t, b.scaledObjects, len(consumers))
	for _, name := range consumers {
		so, ok := b.scaledObjects[name]
		require.True(t, ok, "ScaledObject %s", name)
		ref := so.Spec.ScaleTargetRef
		require.Equal(t, "Deployment", ref.Kind)
		_, exists := b.deployments[ref.Name]
		require.True(t, exists, "ScaledObject %s targets an existing Deployment (%s)", name, ref.Name)
		require.Equal(t, name, ref.Name)
		require.Nil(t, b.deployments[ref.Name].Spec.Replicas, "KEDA owns %s's replica count", name)
		require.GreaterOrEqual(t, so.Spec.MinReplicaCount, int32(1))
		require.Greater(t, so.Spec.MaxReplicaCount, so.Spec.MinReplicaCount)
		tr := so.Spec.Triggers[0]
		if name == "webhooker" {
			require.Len(t, so.Spec.Triggers, 2, "the webhooker scales on its lag and on its backlog in Postgres")
			requireBacklogTrigger(t, b.deployments[name], so.Spec.Triggers[1].Type, so.Spec.Triggers[1].Metadata)
		} else {
			require.Len(t, so.Spec.Triggers, 1)
		}
		if name == "notifier" {
			// One replica applies the stream (the durable is pinned to it):
			// the others are standbys and serve the API, so they scale on
			// CPU, never below the one applying and one standby.
			require.Equal(t, "cpu", tr.Type)
			require.Equal(t, "Utilization", tr.MetricType)
			require.Regexp(t, `^[1-9][0-9]?$`, tr.Metadata["value"])
			require.GreaterOrEqual(t, so.Spec.MinReplicaCount, int32(2), "the notifier keeps a hot standby")
			continue
		}
		require.Equal(t, "nats-jetstream", tr.Type)
		for k := range tr.Metadata {
			require.Contains(t, kedaNATSKeys, k, "%s: %s is not a nats-jetstream trigger field", name, k)
		}
		require.Equal(t, "EVENTS", tr.Metadata["stream"])
		require.Equal(t, name, tr.Metadata["consumer"], "%s scales on its own durable", name)
		require.Equal(t, natsauth.AccountEventline, tr.Metadata["account"], "the account that holds the stream")
		require.Regexp(t, `^[a-z0-9.-]+:8222$`, tr.Metadata["natsServerMonitoringEndpoint"])
		require.Regexp(t, `^[1-9][0-9]*$`, tr.Metadata["lagThreshold"])
	}
	// The durable names the ScaledObjects read are the ones the services
	// provision.
	for name, src := range map[string]string{"projector": "../internal/projector/projector.go", "webhooker": "../internal/webhooker/fanout.go", "notifier": "../internal/notifier/consumer.go"} {
		b, err := os.ReadFile(src)
		require.NoError(t, err)
		require.Regexp(t, `DefaultConsumer = "`+name+`"`, string(b))
	}
}

// requireNATSIdentity: the container connects as identity, its password
// from the Secret "eventline-nats" (the key named after the identity).
func requireNATSIdentity(t *testing.T, c corev1.Container, identity string) {
	t.Helper()
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	require.Equal(t, identity, env["NATS_USER"].Value, "%s connects as NATS identity %s", c.Name, identity)
	ref := env["NATS_PASSWORD"].ValueFrom
	require.NotNil(t, ref, "%s: NATS_PASSWORD from a Secret", c.Name)
	require.Equal(t, "eventline-nats", ref.SecretKeyRef.Name, c.Name)
	require.Equal(t, identity, ref.SecretKeyRef.Key, c.Name)
}

// subset returns the entries of labels whose keys are in sel.
func subset(labels, sel map[string]string) map[string]string {
	out := map[string]string{}
	for k := range sel {
		if v, ok := labels[k]; ok {
			out[k] = v
		}
	}
	return out
}

// notifierMetrics are registered by the notifier (internal/notifier, not
// on this branch yet): the dashboard may query them, and once the package
// exists they must be registered like every other.
var notifierMetrics = []string{"eventline_notifier_digests_total"}

// TestGrafanaDashboard: the dashboard ships as a labelled ConfigMap, and
// every eventline metric it queries is one a service registers.
func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	b := build(t)
	cm, ok := b.configMaps["eventline-grafana-dashboard"]
	require.True(t, ok)
	require.Equal(t, "1", cm.Labels["grafana_dashboard"])
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal([]byte(cm.Data["eventline.json"]), &dash))
	require.Equal(t, "eventline", dash.UID)

	registered := registeredMetrics(t)
	_, notifierErr := os.Stat("../internal/notifier")
	metricName := regexp.MustCompile(`eventline_[a-z0-9_]+`)
	queried := map[string]bool{}
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		require.NotEmpty(t, p.Targets, "panel %q queries something", p.Title)
		for _, tg := range p.Targets {
			for _, m := range metricName.FindAllString(tg.Expr, -1) {
				base := m
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if b, ok := strings.CutSuffix(m, suffix); ok && registered[b] {
						base = b
					}
				}
				queried[base] = true
				if slices.Contains(notifierMetrics, base) && notifierErr != nil {
					continue // checked once internal/notifier is merged
				}
				require.True(t, registered[base], "panel %q queries %s, which no service registers", p.Title, m)
			}
		}
	}
	// The metrics are all on the dashboard.
	for _, m := range []string{"eventline_ingest_events_total", "eventline_ingest_request_duration_seconds", "eventline_ingest_batch_size_events",
		"eventline_consumer_pending_messages", "eventline_projector_lag_seconds", "eventline_webhook_attempts_total", "eventline_notifier_digests_total"} {
		require.True(t, queried[m], "the dashboard shows %s", m)
	}
	names := make([]string, 0, len(queried))
	for m := range queried {
		names = append(names, m)
	}
	sort.Strings(names)
	t.Logf("dashboard metrics: %s", strings.Join(names, ", "))
}

// registeredMetrics are the metric names the Go sources register
// (prometheus Opts{Name: "..."}), from every non-test file under internal/.
func registeredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	re := regexp.MustCompile(`Name:\s*"(eventline_[a-z0-9_]+)"`)
	out := map[string]bool{}
	err := filepath.WalkDir("../internal", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			out[m[1]] = true
		}
		return nil
	})
	require.NoError(t, err)
	require.NotEmpty(t, out)
	return out
}

// TestNATSHelmValues: the chart values ask for 3 clustered servers with
// JetStream file storage, and the jetstream block they merge makes the
// server fsync before every acknowledgement.
func TestNATSHelmValues(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join("nats", "values.yaml"))
	require.NoError(t, err)
	var v struct {
		Config struct {
			Cluster struct {
				Enabled  bool `yaml:"enabled"`
				Replicas int  `yaml:"replicas"`
			} `yaml:"cluster"`
			JetStream struct {
				Enabled   bool `yaml:"enabled"`
				FileStore struct {
					Enabled bool   `yaml:"enabled"`
					Dir     string `yaml:"dir"`
					PVC     struct {
						Enabled bool   `yaml:"enabled"`
						Size    string `yaml:"size"`
					} `yaml:"pvc"`
				} `yaml:"fileStore"`
				Merge map[string]any `yaml:"merge"`
			} `yaml:"jetstream"`
			Monitor struct {
				Enabled bool `yaml:"enabled"`
				Port    int  `yaml:"port"`
			} `yaml:"monitor"`
		} `yaml:"config"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &v))
	c := v.Config
	requireHelmIdentities(t, raw)
	require.True(t, c.Cluster.Enabled)
	require.Equal(t, 3, c.Cluster.Replicas)
	require.True(t, c.JetStream.Enabled)
	require.True(t, c.JetStream.FileStore.Enabled)
	require.True(t, c.JetStream.FileStore.PVC.Enabled)
	require.NotEmpty(t, c.JetStream.FileStore.PVC.Size)
	require.True(t, c.Monitor.Enabled)
	require.Equal(t, 8222, c.Monitor.Port, "KEDA's natsServerMonitoringEndpoint port")

	// The chart renders config.jetstream as the server's jetstream block
	// with merge applied on top: the server must read it as fsync always.
	var block strings.Builder
	fmt.Fprintf(&block, "jetstream {\n  store_dir: %q\n", c.JetStream.FileStore.Dir)
	for k, val := range c.JetStream.Merge {
		fmt.Fprintf(&block, "  %s: %v\n", k, val)
	}
	block.WriteString("}\n")
	var opts server.Options
	require.NoError(t, opts.ProcessConfigString(block.String()))
	require.True(t, opts.SyncAlways, "config.jetstream.merge sets sync_interval: always")
}

// requireHelmIdentities: the chart values merge exactly the rendering of
// eventline's identities (`eventline nats config --helm`) into the server
// configuration, and give the server every password they refer to from
// the Secret "eventline-nats".
func requireHelmIdentities(t *testing.T, raw []byte) {
	t.Helper()
	var v struct {
		Config struct {
			Merge map[string]any `yaml:"merge"`
		} `yaml:"config"`
		Container struct {
			Env map[string]struct {
				ValueFrom struct {
					SecretKeyRef *struct {
						Name string `yaml:"name"`
						Key  string `yaml:"key"`
					} `yaml:"secretKeyRef"`
				} `yaml:"valueFrom"`
			} `yaml:"env"`
		} `yaml:"container"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &v))
	rendered, err := natsauth.Config{}.Helm()
	require.NoError(t, err)
	var want map[string]any
	require.NoError(t, yaml.Unmarshal(rendered, &want))
	got := map[string]any{}
	for k, val := range v.Config.Merge {
		if _, ok := want[k]; ok {
			got[k] = val
		}
	}
	require.Equal(t, want, got, "config.merge is out of date: put the output of `go run ./cmd/eventline nats config --helm` there")
	for _, name := range (natsauth.Config{}).RenderedNames() {
		src, ok := v.Container.Env[natsauth.PasswordEnv(name)]
		require.True(t, ok, "container.env sets %s", natsauth.PasswordEnv(name))
		ref := src.ValueFrom.SecretKeyRef
		require.NotNil(t, ref, "%s from a Secret", natsauth.PasswordEnv(name))
		require.Equal(t, "eventline-nats", ref.Name)
		require.Equal(t, name, ref.Key)
	}
}

// TestScaledConsumersFitMaxWaiting: at the KEDA replica limits, the
// Watermill consumers' default handlers (two pull requests each) fit in
// the max_waiting their durables are created with — past it some
// messages wait for their AckWait. (The notifier is not one: a replica
// holds one pull request.)
func TestScaledConsumersFitMaxWaiting(t *testing.T) {
	b := build(t)
	for name, handlers := range map[string]int{"webhooker": webhooker.DefaultHandlers} {
		so, ok := b.scaledObjects[name]
		require.True(t, ok, "ScaledObject %s", name)
		require.LessOrEqual(t, 2*handlers*int(so.Spec.MaxReplicaCount), consume.MaxWaiting,
			"%s: %d replicas of %d handlers", name, so.Spec.MaxReplicaCount, handlers)
	}
}

func TestMain(m *testing.M) { testenv.Main(m) }
