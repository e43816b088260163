package deploy

// The Helm chart deploy/helm/edgepass, rendered with the helm CLI (v4.3.2,
// built once from the Go module proxy by scripts/build-helm.sh and cached in
// ~/.cache/edgepass, as the harness does for Traefik): lint, strict
// decoding of every rendered object, and the cross-file contracts between
// the chart's values, its objects, the daemon's configuration loader, the
// plugin and the Traefik values files.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mitchellh/mapstructure"
	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"

	"github.com/edgepass/edgepass/daemon/config"
	"github.com/edgepass/edgepass/integration/harness"
	edgepass "github.com/edgepass/edgepass/plugin"
	"github.com/edgepass/edgepass/plugin/token"
)

const (
	helmRelease   = "edgepass"
	helmNamespace = "edgepass"
)

var (
	helmOnce sync.Once
	helmPath string
	helmSkip string
)

// helmBin is the helm CLI from scripts/build-helm.sh (EDGEPASS_HELM names
// another one); the chart tests skip, saying why, only when it cannot be built.
func helmBin(t testing.TB) string {
	t.Helper()
	helmOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		var err error
		if helmPath, err = harness.HelmBin(ctx, t.Logf); err != nil {
			helmSkip = fmt.Sprintf("helm cannot be built, so the chart cannot be linted or rendered: %v", err)
		}
	})
	if helmSkip != "" {
		t.Skip(helmSkip)
	}
	return helmPath
}

func repoRoot(t testing.TB) string {
	t.Helper()
	r, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func helmDir(t testing.TB) string   { return filepath.Join(repoRoot(t), "deploy", "helm") }
func chartPath(t testing.TB) string { return filepath.Join(helmDir(t), "edgepass") }

// runHelm runs helm with args and returns its stdout, or the error with
// stderr.
func runHelm(t testing.TB, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmBin(t), args...)
	// No repositories, no plugins, no cache of the user's: the chart needs none.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(home, "cache"), "HELM_CONFIG_HOME="+filepath.Join(home, "config"), "HELM_DATA_HOME="+filepath.Join(home, "data"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %v\n%s%s", strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	return stdout.String(), nil
}

// testAnchor is a well-formed trust anchor (the public key of an all-zero
// seed), standing in for `edgepass keys anchor`.
var testAnchor = base64.RawURLEncoding.EncodeToString(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public().(ed25519.PublicKey))

// chartRender is one `helm template` of the chart.
type chartRender struct {
	name   string
	files  []string // values files on top of values.yaml, relative to the chart
	set    []string
	values map[string]any // values.yaml, the files and --set merged
	objs   []*kubeObject
	errs   []error // from decodeBuiltins
}

// chartRenders are the renders the tests check: the defaults as installed
// first (no trust anchor yet: no Middleware), the defaults with the anchor,
// the HA values with the anchor, and every optional value set
// (testdata/helm-every-value.yaml). Files are relative to the chart, or to
// this package when they start with testdata/.
var chartRenders = []struct {
	name  string
	files []string
	set   []string
}{
	{"default", nil, nil},
	{"default+anchor", nil, []string{"edge.trustAnchors={" + testAnchor + "}"}},
	{"ha+anchor", []string{"values-ha.yaml"}, []string{"edge.trustAnchors={" + testAnchor + "}"}},
	{"every-value", []string{"testdata/helm-every-value.yaml"}, nil},
}

// valuesFile is where a values file of chartRenders is.
func valuesFile(t testing.TB, f string) string {
	t.Helper()
	if strings.HasPrefix(f, "testdata/") {
		abs, err := filepath.Abs(f)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	return filepath.Join(chartPath(t), f)
}

var (
	renderMu    sync.Mutex
	renderCache = map[string]*chartRender{}
)

// renderChart renders (once per package run) the named entry of chartRenders.
func renderChart(t testing.TB, name string) *chartRender {
	t.Helper()
	renderMu.Lock()
	defer renderMu.Unlock()
	if r, ok := renderCache[name]; ok {
		if r == nil {
			t.Fatalf("render %s failed in an earlier test", name)
		}
		return r
	}
	renderCache[name] = nil
	var spec *struct {
		name  string
		files []string
		set   []string
	}
	for i := range chartRenders {
		if chartRenders[i].name == name {
			spec = &chartRenders[i]
		}
	}
	if spec == nil {
		t.Fatalf("no render %s", name)
	}
	r := &chartRender{name: name, files: spec.files, set: spec.set}
	args := []string{"template", helmRelease, chartPath(t), "--namespace", helmNamespace}
	values := readValues(t, filepath.Join(chartPath(t), "values.yaml"))
	for _, f := range spec.files {
		args = append(args, "-f", valuesFile(t, f))
		values = mergeValues(values, readValues(t, valuesFile(t, f)))
	}
	for _, s := range spec.set {
		args = append(args, "--set", s)
		k, v, _ := strings.Cut(s, "=")
		var val any = v
		if strings.HasPrefix(v, "{") && strings.HasSuffix(v, "}") {
			var l []any
			for _, e := range strings.Split(strings.Trim(v, "{}"), ",") {
				l = append(l, e)
			}
			val = l
		}
		values = mergeValues(values, nestValue(strings.Split(k, "."), val))
	}
	out, err := runHelm(t, args...)
	if err != nil {
		t.Fatalf("render %s: %v", name, err)
	}
	r.values = values
	if r.objs, err = splitManifests("helm template ("+name+")", []byte(out)); err != nil {
		t.Fatalf("render %s: %v", name, err)
	}
	r.errs = decodeBuiltins(r.objs)
	renderCache[name] = r
	return r
}

func readValues(t testing.TB, file string) map[string]any {
	t.Helper()
	docs, err := readYAML(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 1 {
		t.Fatalf("%s: want one YAML document, got %d", file, len(docs))
	}
	return docs[0]
}

// mergeValues merges over into base as Helm does (maps deeply, anything
// else replaced); neither argument is modified.
func mergeValues(base, over map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		if bm, ok := out[k].(map[string]any); ok {
			if om, ok := v.(map[string]any); ok {
				out[k] = mergeValues(bm, om)
				continue
			}
		}
		out[k] = v
	}
	return out
}

func nestValue(path []string, v any) map[string]any {
	if len(path) == 1 {
		return map[string]any{path[0]: v}
	}
	return map[string]any{path[0]: nestValue(path[1:], v)}
}

func (r *chartRender) one(t testing.TB, kind, name string) *kubeObject {
	t.Helper()
	return findObject(t, r.objs, kind, helmNamespace, name)
}

func (r *chartRender) deployment(t testing.TB) (*kubeObject, *appsv1.Deployment) {
	t.Helper()
	o := r.one(t, "Deployment", helmRelease)
	d, ok := o.Typed.(*appsv1.Deployment)
	if !ok {
		t.Fatalf("%s did not decode (see TestHelmChartRendersStrictlyValidObjects)", o)
	}
	return o, d
}

// container is the daemon container, in typed and map form.
func (r *chartRender) container(t testing.TB) (*corev1.Container, obj, func(string) obj) {
	t.Helper()
	o, d := r.deployment(t)
	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("%s: want one container", o)
	}
	return &d.Spec.Template.Spec.Containers[0], podContainer(o.Map), podVolume(o.Map)
}

// daemonConfigText is the daemon's configuration file as the pod reads it.
func (r *chartRender) daemonConfigText(t testing.TB) (string, string) {
	t.Helper()
	c, cm, volume := r.container(t)
	var file string
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--configFile=") {
			file = strings.TrimPrefix(a, "--configFile=")
		}
	}
	if file == "" {
		t.Fatalf("render %s: the daemon has no --configFile argument: %v", r.name, c.Args)
	}
	src, err := resolveFile(file, list(cm["volumeMounts"]), volume)
	if err != nil {
		t.Fatalf("render %s: %s: %v", r.name, file, err)
	}
	if src.Kind != "ConfigMap" {
		t.Fatalf("render %s: %s comes from a %s, want the chart's ConfigMap", r.name, file, src.Kind)
	}
	cmo := r.one(t, "ConfigMap", src.Name)
	text, ok := get(cmo.Map, "data", src.Key).(string)
	if !ok {
		t.Fatalf("render %s: %s has no key %s", r.name, cmo, src.Key)
	}
	return file, text
}

func chartMeta(t testing.TB) (version, appVersion string) {
	t.Helper()
	m := readValues(t, filepath.Join(chartPath(t), "Chart.yaml"))
	return str(m, "version"), str(m, "appVersion")
}

// TestHelmLint: `helm lint --strict` passes with the default values, the HA
// values, and with a trust anchor set (which renders the Middlewares); the
// values schema holds for both values files; the install notes render and
// name the next step (get the trust anchor; use the Middlewares).
func TestHelmLint(t *testing.T) {
	helmBin(t)
	for _, r := range chartRenders {
		args := []string{"lint", "--strict", chartPath(t), "--namespace", helmNamespace}
		for _, f := range r.files {
			args = append(args, "-f", valuesFile(t, f))
		}
		for _, s := range r.set {
			args = append(args, "--set", s)
		}
		if out, err := runHelm(t, args...); err != nil {
			t.Errorf("%s: %v", r.name, err)
		} else if !strings.Contains(out, "0 chart(s) failed") {
			t.Errorf("%s: helm lint: %s", r.name, out)
		}
		// What `helm install` prints afterwards (NOTES.txt) renders and
		// tells the next step.
		args = []string{"install", helmRelease, chartPath(t), "--namespace", helmNamespace, "--dry-run=client"}
		for _, f := range r.files {
			args = append(args, "-f", valuesFile(t, f))
		}
		for _, s := range r.set {
			args = append(args, "--set", s)
		}
		out, err := runHelm(t, args...)
		if err != nil {
			t.Errorf("%s: %v", r.name, err)
			continue
		}
		notes := out[strings.Index(out, "NOTES:")+1:]
		values := renderChart(t, r.name).values
		want := "edgepass keys anchor"
		if len(list(get(values, "edge", "trustAnchors"))) > 0 {
			want = helmNamespace + "-" + str(list(values["middlewares"])[0], "name") + "@kubernetescrd"
		}
		if !strings.Contains(notes, want) {
			t.Errorf("%s: the install notes do not say %q:\n%s", r.name, want, notes)
		}
	}
}

// TestHelmChartRendersStrictlyValidObjects: every object of every render
// decodes into its Kubernetes API type with no unknown or duplicate field,
// or fits Traefik v3.6.12's CRD schema; selectors, named ports, mounts and
// Service targets hold together; the pods meet the "restricted" Pod
// Security Standard; the chart renders no Secret (it only
// references existing ones).
func TestHelmChartRendersStrictlyValidObjects(t *testing.T) {
	for _, spec := range chartRenders {
		r := renderChart(t, spec.name)
		for _, err := range append(r.errs, validateCustom(t, r.objs)...) {
			t.Errorf("render %s: %v", r.name, err)
		}
		for _, err := range append(checkWorkloads(r.objs), checkRestricted(r.objs)...) {
			t.Errorf("render %s: %v", r.name, err)
		}
		kinds := map[string]int{}
		for _, o := range r.objs {
			kinds[o.GVK.Kind]++
			if o.NS != helmNamespace {
				t.Errorf("render %s: %s is not in the release's namespace %s", r.name, o, helmNamespace)
			}
			if o.GVK.Kind == "Secret" {
				t.Errorf("render %s: the chart renders %s; secrets must come from existing Secrets named in the values", r.name, o)
			}
		}
		wantMW := 0
		if len(list(get(r.values, "edge", "trustAnchors"))) > 0 {
			wantMW = len(list(r.values["middlewares"]))
		}
		sa := 0
		if b, _ := get(r.values, "serviceAccount", "create").(bool); b {
			sa = 1
		}
		want := map[string]int{"Deployment": 1, "Service": 2, "ConfigMap": 1, "ServiceAccount": sa, "PodDisruptionBudget": 1, "IngressRoute": 1, "Middleware": wantMW}
		for k, n := range want {
			if kinds[k] != n {
				t.Errorf("render %s: %d %s objects, want %d", r.name, kinds[k], k, n)
			}
		}
	}
}

// portOf returns the port of a host:port listen address.
func portOf(t testing.TB, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	return int32(n)
}

// TestHelmPortsProbesAndSecretsAgree: the daemon's configured listen
// addresses are the container ports the Services target and the probes hit
// (liveness /healthz and readiness /readyz on the admin port, off the
// ingress); every Secret the pod mounts is one the values name
// (secretName/key) and deploy/helm/README.md tells operators to create, and
// each *File setting of the daemon resolves to the Secret key its value
// names; the image is the chart's appVersion.
func TestHelmPortsProbesAndSecretsAgree(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(helmDir(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	// The default values' Secrets must be created before install: the
	// README says how.
	defaults := map[string]bool{}
	walk(readValues(t, filepath.Join(chartPath(t), "values.yaml")), "", func(path string, v any) {
		if s, _ := v.(string); s != "" && (strings.HasSuffix(path, ".secretName") || strings.HasSuffix(path, ".configMapName")) {
			defaults[s] = true
		}
	})
	chartVersion, appVersion := chartMeta(t)
	for _, spec := range chartRenders {
		r := renderChart(t, spec.name)
		c, cm, volume := r.container(t)
		_, text := r.daemonConfigText(t)
		var cfg obj
		if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
			t.Fatalf("render %s: daemon config: %v", r.name, err)
		}
		ports := map[string]int32{}
		for _, p := range c.Ports {
			ports[p.Name] = p.ContainerPort
		}
		if got, want := ports["http"], portOf(t, str(cfg, "listen")); got != want {
			t.Errorf("render %s: container port http %d, daemon listen port %d", r.name, got, want)
		}
		if got, want := ports["admin"], portOf(t, str(cfg, "admin", "listen")); got != want {
			t.Errorf("render %s: container port admin %d, daemon admin.listen port %d", r.name, got, want)
		}
		for svc, target := range map[string]string{helmRelease: "http", helmRelease + "-admin": "admin"} {
			s, ok := r.one(t, "Service", svc).Typed.(*corev1.Service)
			if !ok || len(s.Spec.Ports) != 1 {
				t.Errorf("render %s: Service %s: want one port", r.name, svc)
				continue
			}
			if tp := s.Spec.Ports[0].TargetPort; tp.String() != target {
				t.Errorf("render %s: Service %s targets %s, want container port %s", r.name, svc, tp.String(), target)
			}
		}
		for _, p := range []struct {
			what  string
			probe *corev1.Probe
			path  string
		}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
			if p.probe == nil || p.probe.HTTPGet == nil {
				t.Errorf("render %s: no %s HTTP probe", r.name, p.what)
				continue
			}
			if p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "admin" {
				t.Errorf("render %s: %s probe GET %s on port %s, want %s on admin", r.name, p.what, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port.String(), p.path)
			}
		}

		// Each secret file setting resolves to the Secret key its value names.
		for _, f := range []struct{ setting, value string }{
			{"oidc.clientSecretFile", "oidc.clientSecret"},
			{"admin.tokenFile", "admin.token"},
			{"keys.encryptionKeyFile", "keys.encryptionKey"},
			{"nats.passwordFile", "nats.password"},
		} {
			file := str(cfg, strings.Split(f.setting, ".")...)
			if file == "" {
				t.Errorf("render %s: daemon config has no %s", r.name, f.setting)
				continue
			}
			src, err := resolveFile(file, list(cm["volumeMounts"]), volume)
			if err != nil {
				t.Errorf("render %s: %s %s: %v", r.name, f.setting, file, err)
				continue
			}
			ref, _ := get(r.values, strings.Split(f.value, ".")...).(obj)
			if src.Kind != "Secret" || src.Name != str(ref, "secretName") || src.Key != str(ref, "key") {
				t.Errorf("render %s: %s is %s %s key %s, want Secret %s key %s (values %s)", r.name, f.setting, src.Kind, src.Name, src.Key, str(ref, "secretName"), str(ref, "key"), f.value)
			}
		}
		if ca := str(cfg, "nats", "caFile"); ca != "" {
			src, err := resolveFile(ca, list(cm["volumeMounts"]), volume)
			if err != nil {
				t.Errorf("render %s: nats.caFile: %v", r.name, err)
			} else if src.Name != str(r.values, "nats", "ca", "secretName") && src.Name != str(r.values, "nats", "ca", "configMapName") || src.Key != str(r.values, "nats", "ca", "key") {
				t.Errorf("render %s: nats.caFile is %s %s key %s, not what values nats.ca name", r.name, src.Kind, src.Name, src.Key)
			}
		}

		// Every Secret/ConfigMap the pod uses exists in the render or is
		// named by the values and documented in the README.
		documented := map[string]bool{}
		walk(r.values, "", func(path string, v any) {
			if strings.HasSuffix(path, ".secretName") || strings.HasSuffix(path, ".configMapName") {
				if s, _ := v.(string); s != "" {
					documented[s] = true
				}
			}
		})
		o, _ := r.deployment(t)
		for _, v := range list(get(o.Map, "spec", "template", "spec", "volumes")) {
			var refs []fileSource
			if s := get(v, "secret"); s != nil {
				refs = append(refs, fileSource{Kind: "Secret", Name: str(s, "secretName")})
			}
			if s := get(v, "configMap"); s != nil {
				refs = append(refs, fileSource{Kind: "ConfigMap", Name: str(s, "name")})
			}
			for _, p := range list(get(v, "projected", "sources")) {
				if s := get(p, "secret"); s != nil {
					refs = append(refs, fileSource{Kind: "Secret", Name: str(s, "name")})
				}
				if s := get(p, "configMap"); s != nil {
					refs = append(refs, fileSource{Kind: "ConfigMap", Name: str(s, "name")})
				}
			}
			for _, ref := range refs {
				inRender := false
				for _, x := range r.objs {
					inRender = inRender || x.GVK.Kind == ref.Kind && x.Name == ref.Name
				}
				switch {
				case inRender:
				case !documented[ref.Name]:
					t.Errorf("render %s: volume %s uses %s %s, which is neither rendered nor named by a secretName/configMapName value", r.name, str(v, "name"), ref.Kind, ref.Name)
				case defaults[ref.Name] && !strings.Contains(string(readme), ref.Name):
					t.Errorf("render %s: %s %s must exist before install, but deploy/helm/README.md does not say how to create it", r.name, ref.Kind, ref.Name)
				}
			}
		}
		if len(c.Env) > 0 {
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && !documented[e.ValueFrom.SecretKeyRef.Name] {
					t.Errorf("render %s: env %s reads Secret %s, which no value names", r.name, e.Name, e.ValueFrom.SecretKeyRef.Name)
				}
			}
		}

		if want := "ghcr.io/edgepass/edgepass:" + appVersion; c.Image != want {
			t.Errorf("render %s: image %s, want %s (the chart's appVersion)", r.name, c.Image, want)
		}
		if got := str(o.Map, "metadata", "labels", "app.kubernetes.io/version"); got != appVersion {
			t.Errorf("render %s: version label %q, want appVersion %q", r.name, got, appVersion)
		}
		if "v"+chartVersion != appVersion {
			t.Errorf("Chart.yaml: version %s and appVersion %s name different releases", chartVersion, appVersion)
		}
	}
	// The plugin reports plugin.Version in its heartbeats: the release
	// being shipped, or the next one with -dev between releases.
	if pv := edgepass.Version; pv != appVersion && !(strings.HasSuffix(pv, "-dev") && semverLess(appVersion, strings.TrimSuffix(pv, "-dev"))) {
		t.Errorf("plugin.Version %s: want the chart's appVersion %s, or a later vX.Y.Z-dev (docs/release.md)", pv, appVersion)
	}
}

// semverLess compares two vMAJOR.MINOR.PATCH versions.
func semverLess(a, b string) bool {
	parse := func(v string) (n [3]int) {
		for i, f := range strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3) {
			n[i], _ = strconv.Atoi(f)
		}
		return n
	}
	x, y := parse(a), parse(b)
	for i := range x {
		if x[i] != y[i] {
			return x[i] < y[i]
		}
	}
	return false
}

// TestHelmDaemonConfigLoads: the configuration file the chart renders loads
// with the daemon's own loader (config.Load: paerser, unknown settings
// refused, every setting validated, the secret files read), with the mounted
// files stood in for by local ones; it runs against the external NATS over
// TLS with the values' bucket replicas, and its listeners are the ports the
// chart declares.
func TestHelmDaemonConfigLoads(t *testing.T) {
	ca, err := newCA("edgepass chart test CA")
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range chartRenders {
		r := renderChart(t, spec.name)
		_, text := r.daemonConfigText(t)
		c, _, _ := r.container(t)
		loaded, dataDir, err := loadDaemonConfig(t, ca, text)
		if err != nil {
			t.Errorf("render %s: the daemon refuses the chart's configuration:\n%v\n%s", r.name, err, text)
			continue
		}
		if loaded.NATS.Embedded.Enabled {
			t.Errorf("render %s: the daemon would run its embedded NATS", r.name)
		}
		for _, u := range loaded.NATS.URLs {
			if !strings.HasPrefix(u, "tls://") {
				t.Errorf("render %s: nats.urls %q is not tls://", r.name, u)
			}
		}
		if loaded.NATS.CAFile == "" {
			t.Errorf("render %s: no nats.caFile: the NATS servers' private CA would not verify", r.name)
		}
		wantReplicas := 1
		if n, ok := get(r.values, "nats", "replicas").(int); ok {
			wantReplicas = n
		}
		if loaded.NATS.Replicas != wantReplicas {
			t.Errorf("render %s: nats.replicas %d, want %d", r.name, loaded.NATS.Replicas, wantReplicas)
		}
		if loaded.PublicURL != strings.TrimRight(str(r.values, "publicURL"), "/") {
			t.Errorf("render %s: publicURL %q, values say %q", r.name, loaded.PublicURL, str(r.values, "publicURL"))
		}
		// dataDir is an emptyDir; the encryption key is the Secret's, not one
		// generated per replica into dataDir.
		o, d := r.deployment(t)
		mounted := false
		for _, m := range c.VolumeMounts {
			if m.MountPath == dataDir {
				for _, v := range d.Spec.Template.Spec.Volumes {
					if v.Name == m.Name && v.EmptyDir != nil {
						mounted = true
					}
				}
			}
		}
		if !mounted {
			t.Errorf("render %s: %s: dataDir %s is not an emptyDir mount (the root filesystem is read-only)", r.name, o, dataDir)
		}
		if loaded.Keys.EncryptionKeyFile == "" || strings.HasPrefix(loaded.Keys.EncryptionKeyFile, loaded.DataDir) {
			t.Errorf("render %s: keys.encryptionKeyFile is under dataDir: each replica would generate its own", r.name)
		}
	}
}

// loadDaemonConfig loads a daemon configuration file as the daemon does
// (config.Load), with every file it names stood in for by a local file of
// the right shape and dataDir moved to a temporary directory; it returns the
// loaded configuration and the dataDir the file names.
func loadDaemonConfig(t testing.TB, ca *ca, text string) (*config.Configuration, string, error) {
	t.Helper()
	dir := t.TempDir()
	var cfg obj
	if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
		return nil, "", err
	}
	secret := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	for i, f := range []struct {
		path    []string
		content string
	}{
		{[]string{"oidc", "clientSecretFile"}, "client-secret-for-the-test"},
		{[]string{"admin", "tokenFile"}, "admin-token-for-the-deploy-test"},
		{[]string{"keys", "encryptionKeyFile"}, secret},
		{[]string{"nats", "passwordFile"}, "nats-password-for-the-test"},
		{[]string{"nats", "tokenFile"}, "nats-token-for-the-test"},
		{[]string{"nats", "credentialsFile"}, "not checked by Load"},
		{[]string{"nats", "caFile"}, string(ca.certPEM)},
	} {
		m, _ := get(cfg, f.path[:len(f.path)-1]...).(obj)
		p, _ := m[f.path[len(f.path)-1]].(string)
		if p == "" {
			continue
		}
		if !strings.HasPrefix(p, "/") {
			return nil, "", fmt.Errorf("%s %q is relative: it would depend on the pod's working directory", strings.Join(f.path, "."), p)
		}
		local := filepath.Join(dir, fmt.Sprintf("%d-%s", i, filepath.Base(p)))
		if err := os.WriteFile(local, []byte(f.content), 0o600); err != nil {
			t.Fatal(err)
		}
		m[f.path[len(f.path)-1]] = local
	}
	dataDir := str(cfg, "dataDir")
	cfg["dataDir"] = filepath.Join(dir, "data")
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "edgepass.yml")
	if err := os.WriteFile(file, out, 0o600); err != nil {
		t.Fatal(err)
	}
	loaded, err := config.Load([]string{"--configFile=" + file}, nil)
	return loaded, dataDir, err
}

// TestHelmPodIsLockedDownAndAvailable: the daemon runs as a non-root user
// with a read-only root filesystem, no capabilities and no privilege
// escalation, no service account token; 2 replicas by default and 3 with
// values-ha.yaml, which adds a PodDisruptionBudget keeping 2, hard pod
// anti-affinity and bucket replicas 3; the daemon's IngressRoute sends the
// publicURL host to the browser Service, without sticky sessions (any
// replica completes any login) and never through an edgepass Middleware.
func TestHelmPodIsLockedDownAndAvailable(t *testing.T) {
	want := map[string]struct {
		replicas, minAvailable int32
		hard                   bool
		natsReplicas           int
	}{
		"default":        {2, 1, false, 1},
		"default+anchor": {2, 1, false, 1},
		"ha+anchor":      {3, 2, true, 3},
		"every-value":    {4, 3, true, 3},
	}
	for _, spec := range chartRenders {
		r := renderChart(t, spec.name)
		w := want[spec.name]
		o, d := r.deployment(t)
		pod := d.Spec.Template.Spec
		c, _, _ := r.container(t)
		if d.Spec.Replicas == nil || *d.Spec.Replicas != w.replicas {
			t.Errorf("render %s: replicas %v, want %d", r.name, d.Spec.Replicas, w.replicas)
		}
		psc, csc := pod.SecurityContext, c.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
			t.Errorf("render %s: %s: pod not forced to a non-root user", r.name, o)
		}
		if csc == nil || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
			t.Errorf("render %s: root filesystem not read-only", r.name)
		}
		if csc == nil || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
			t.Errorf("render %s: privilege escalation not disabled", r.name)
		}
		if csc == nil || csc.Capabilities == nil || !reflect.DeepEqual(csc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(csc.Capabilities.Add) > 0 {
			t.Errorf("render %s: capabilities not dropped: %+v", r.name, csc)
		}
		if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
			t.Errorf("render %s: the service account token is mounted; the daemon never talks to the API", r.name)
		}
		if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("render %s: no memory request/limit", r.name)
		}
		pdb, _ := r.one(t, "PodDisruptionBudget", helmRelease).Typed.(*policyv1.PodDisruptionBudget)
		if pdb == nil || pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntVal != w.minAvailable {
			t.Errorf("render %s: PodDisruptionBudget minAvailable %v, want %d", r.name, pdb, w.minAvailable)
		}
		hard := pod.Affinity != nil && pod.Affinity.PodAntiAffinity != nil && len(pod.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) > 0
		if hard != w.hard {
			t.Errorf("render %s: hard pod anti-affinity %v, want %v", r.name, hard, w.hard)
		}
		if hard {
			term := pod.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0]
			if term.TopologyKey != str(r.values, "podAntiAffinityTopologyKey") || term.LabelSelector == nil || !reflect.DeepEqual(term.LabelSelector.MatchLabels, d.Spec.Selector.MatchLabels) {
				t.Errorf("render %s: anti-affinity term %+v does not keep the daemons on different nodes", r.name, term)
			}
		}
		_, text := r.daemonConfigText(t)
		var cfg obj
		_ = yaml.Unmarshal([]byte(text), &cfg)
		if n, _ := get(cfg, "nats", "replicas").(int); n != w.natsReplicas {
			t.Errorf("render %s: daemon nats.replicas %d, want %d", r.name, n, w.natsReplicas)
		}

		ir := r.one(t, "IngressRoute", helmRelease)
		routes := list(get(ir.Map, "spec", "routes"))
		if len(routes) != 1 {
			t.Fatalf("render %s: %s: want one route", r.name, ir)
		}
		pub, _ := url.Parse(str(r.values, "publicURL"))
		if m := str(routes[0], "match"); m != "Host(`"+pub.Hostname()+"`)" {
			t.Errorf("render %s: %s matches %q, want the publicURL host %s", r.name, ir, m, pub.Hostname())
		}
		for _, mw := range list(get(routes[0], "middlewares")) {
			for _, ours := range objectsOfKind(r.objs, "Middleware") {
				if str(mw, "name") == ours.Name {
					t.Errorf("render %s: the daemon's route goes through edgepass Middleware %s: logging in would need a login", r.name, ours.Name)
				}
			}
		}
		svcs := list(get(routes[0], "services"))
		if len(svcs) != 1 {
			t.Fatalf("render %s: %s: want one service", r.name, ir)
		}
		if get(svcs[0], "sticky") != nil {
			t.Errorf("render %s: %s: sticky sessions; any replica completes any login", r.name, ir)
		}
		svc, _ := r.one(t, "Service", str(svcs[0], "name")).Typed.(*corev1.Service)
		port, _ := get(svcs[0], "port").(float64)
		if svc == nil || len(svc.Spec.Ports) == 0 || float64(svc.Spec.Ports[0].Port) != port || svc.Spec.Ports[0].TargetPort.String() != "http" {
			t.Errorf("render %s: %s routes to %s:%v, which is not the browser Service's port", r.name, ir, str(svcs[0], "name"), port)
		}
		if get(ir.Map, "spec", "tls") == nil {
			t.Errorf("render %s: %s has no tls: the session cookie is Secure", r.name, ir)
		}
	}
}

// pluginSettingNames are the plugin's settings (plugin.Config) and
// pluginNATSSettingNames those under nats (plugin.NATSConfig), as users
// write them. TestPluginSettingNamesMatchConfig keeps them equal to the
// plugin's Config fields and to the chart's lists (_helpers.tpl).
var (
	pluginSettingNames = []string{
		"loginURL", "issuer", "audience", "jwks", "trustAnchors", "cookieName", "clockSkew",
		"allowedGroups", "allowedUsers", "allowedEmailDomains", "publicPaths",
		"userHeader", "emailHeader", "groupsHeader", "nameHeader", "subjectHeader", "groupsSeparator",
		"stripHeaders", "removeCookie", "requireSync", "logLevel", "cacheSize", "maxStaleness", "staleAction", "nats",
		"assertionHeader", "assertionAudience", "serviceTokens", "bearer",
	}
	pluginNATSSettingNames = []string{
		"urls", "bucket", "token", "tokenFile", "user", "password", "passwordFile", "nkeySeed", "nkeySeedFile",
		"credsFile", "certFile", "keyFile", "edgeName", "caFile", "tlsServerName", "insecureSkipVerify", "replicaID",
	}
)

// configFieldNames are the settings Traefik's decoder (mapstructure, field
// names matched case-insensitively) fills in a config struct, lower-cased.
func configFieldNames(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() || strings.Contains(f.Tag.Get("mapstructure"), "remain") {
			continue
		}
		n := f.Name
		if tag, _, _ := strings.Cut(f.Tag.Get("mapstructure"), ","); tag != "" {
			n = tag
		}
		out = append(out, strings.ToLower(n))
	}
	sort.Strings(out)
	return out
}

func lowerSorted(l []string) []string {
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = strings.ToLower(s)
	}
	sort.Strings(out)
	return out
}

// TestPluginSettingNamesMatchConfig: the setting names the tests and the
// chart accept are exactly the plugin's Config and NATSConfig fields.
func TestPluginSettingNamesMatchConfig(t *testing.T) {
	for _, c := range []struct {
		what  string
		names []string
		typ   reflect.Type
		tpl   string
	}{
		{"settings", pluginSettingNames, reflect.TypeOf(edgepass.Config{}), "edgepass.pluginSettings"},
		{"nats settings", pluginNATSSettingNames, reflect.TypeOf(edgepass.NATSConfig{}), "edgepass.pluginNATSSettings"},
	} {
		missing, extra := setDiff(configFieldNames(c.typ), lowerSorted(c.names))
		if len(missing) > 0 || len(extra) > 0 {
			t.Errorf("plugin %s: %s lacks %v, has %v which the plugin does not know; update the lists here and in deploy/helm/edgepass/templates/_helpers.tpl", c.what, c.typ, missing, extra)
		}
		helpers, err := os.ReadFile(filepath.Join(chartPath(t), "templates", "_helpers.tpl"))
		if err != nil {
			t.Fatal(err)
		}
		re := regexp.MustCompile(`(?s)\{\{- define "` + regexp.QuoteMeta(c.tpl) + `" -\}\}\s*(.*?)\s*\{\{- end \}\}`)
		m := re.FindSubmatch(helpers)
		if m == nil {
			t.Errorf("_helpers.tpl has no define %q", c.tpl)
			continue
		}
		if got := strings.Fields(string(m[1])); !reflect.DeepEqual(lowerSorted(got), lowerSorted(c.names)) {
			missing, extra := setDiff(lowerSorted(c.names), lowerSorted(got))
			t.Errorf("_helpers.tpl %s lacks %v and has %v beyond the plugin's %s", c.tpl, missing, extra, c.what)
		}
	}
}

// knownSetting returns the canonical name of a setting (Traefik matches
// them case-insensitively), or "".
func knownSetting(k string, names []string) string {
	for _, n := range names {
		if strings.EqualFold(n, k) {
			return n
		}
	}
	return ""
}

// checkPluginSettings checks one Middleware's plugin settings: only known
// names, no secret inline (or as a urn:k8s:secret Traefik would resolve
// into it), trust anchors that parse, NATS over TLS with a user and a
// password file.
func checkPluginSettings(where string, conf obj) []string {
	var errs []string
	for k, v := range conf {
		canon := knownSetting(k, pluginSettingNames)
		if canon == "" {
			errs = append(errs, fmt.Sprintf("%s: unknown plugin setting %q", where, k))
			continue
		}
		if canon == "nats" {
			n, ok := v.(obj)
			if !ok {
				errs = append(errs, fmt.Sprintf("%s: nats is not a mapping", where))
				continue
			}
			for nk := range n {
				if knownSetting(nk, pluginNATSSettingNames) == "" {
					errs = append(errs, fmt.Sprintf("%s: unknown plugin setting nats.%s", where, nk))
				}
			}
		}
	}
	walk(conf, "", func(path string, v any) {
		key := strings.ToLower(path[strings.LastIndex(path, ".")+1:])
		if i := strings.Index(key, "["); i >= 0 {
			key = key[:i]
		}
		if s, ok := v.(string); ok && strings.HasPrefix(strings.ToLower(s), "urn:k8s:secret") {
			errs = append(errs, fmt.Sprintf("%s: %s = %q: Traefik resolves the Secret into the setting, which its API shows", where, path, s))
		} else if secretKeys[key] && fmt.Sprint(v) != "" {
			errs = append(errs, fmt.Sprintf("%s: %s holds a secret inline; use the *File setting", where, path))
		}
	})
	var anchors []string
	for _, a := range list(conf["trustAnchors"]) {
		anchors = append(anchors, fmt.Sprint(a))
	}
	if s, ok := conf["trustAnchors"].(string); ok {
		anchors = strings.Split(s, ",")
	}
	if _, err := token.ParseAnchors(anchors); err != nil {
		errs = append(errs, fmt.Sprintf("%s: trustAnchors: %v", where, err))
	}
	urls := confStrings(get(conf, "nats", "urls"))
	if len(urls) == 0 {
		errs = append(errs, fmt.Sprintf("%s: no nats.urls", where))
	}
	for _, u := range urls {
		if !strings.HasPrefix(u, "tls://") {
			errs = append(errs, fmt.Sprintf("%s: nats.urls %q is not tls://: the password would cross the network in clear", where, u))
		}
	}
	if str(conf, "nats", "user") == "" || str(conf, "nats", "passwordFile") == "" {
		errs = append(errs, fmt.Sprintf("%s: no nats.user and nats.passwordFile", where))
	}
	return errs
}

// traefikValuesFiles are the Traefik chart values files of deploy/helm.
var traefikValuesFiles = []string{"traefik-values.yaml", "traefik-values-localplugin.yaml"}

// TestHelmMiddlewaresAreAcceptedByThePlugin: the rendered Middlewares use
// only settings the plugin knows, hold no secret (Traefik's API shows every
// setting), have trustAnchors; loginURL and issuer come from publicURL; the
// files they name are mounted by both Traefik values files; and the plugin's
// own New, fed the settings the way Traefik decodes them, accepts them.
func TestHelmMiddlewaresAreAcceptedByThePlugin(t *testing.T) {
	ca, err := newCA("edgepass middleware test CA")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pw := filepath.Join(dir, "nats-password")
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(pw, []byte("edge-password-for-the-test"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, ca.certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	defaults := readValues(t, filepath.Join(chartPath(t), "values.yaml"))
	for _, name := range []string{"default+anchor", "ha+anchor", "every-value"} {
		r := renderChart(t, name)
		mws := objectsOfKind(r.objs, "Middleware")
		if len(mws) == 0 {
			t.Fatalf("render %s: no Middleware", r.name)
		}
		pluginName := str(r.values, "edge", "pluginName")
		pub := strings.TrimRight(str(r.values, "publicURL"), "/")
		for _, m := range mws {
			plugins, _ := get(m.Map, "spec", "plugin").(obj)
			if len(plugins) != 1 || plugins[pluginName] == nil {
				t.Errorf("render %s: %s: spec.plugin must hold exactly %q, the name Traefik loads the plugin as", r.name, m, pluginName)
				continue
			}
			conf, _ := plugins[pluginName].(obj)
			for _, e := range checkPluginSettings(fmt.Sprintf("render %s: %s", r.name, m), conf) {
				t.Error(e)
			}
			if str(conf, "loginURL") != pub+"/login" || str(conf, "issuer") != pub {
				t.Errorf("render %s: %s: loginURL %q issuer %q, want %s/login and %s", r.name, m, str(conf, "loginURL"), str(conf, "issuer"), pub, pub)
			}
			for _, vf := range traefikValuesFiles {
				if str(r.values, "edge", "nats", "passwordFile") != str(defaults, "edge", "nats", "passwordFile") {
					break // other files: another Traefik values file mounts them
				}
				tv := &base{traefik: readValues(t, filepath.Join(helmDir(t), vf))}
				for _, f := range []string{"passwordFile", "caFile"} {
					p := str(conf, "nats", f)
					if p == "" {
						t.Errorf("render %s: %s: no nats.%s", r.name, m, f)
						continue
					}
					if _, err := traefikFile(tv, p); err != nil {
						t.Errorf("render %s: %s: nats.%s %s is not mounted by %s: %v", r.name, m, f, p, vf, err)
					}
				}
			}

			// The plugin itself: CreateConfig, then mapstructure as Traefik
			// (weakly typed, "," splits strings into slices), then New, with
			// the mounted files stood in for.
			local := mergeValues(conf, obj{"nats": mergeValues(get(conf, "nats").(obj), obj{"passwordFile": pw, "caFile": caFile})})
			cfg := edgepass.CreateConfig()
			dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{DecodeHook: mapstructure.StringToSliceHookFunc(","), WeaklyTypedInput: true, Result: cfg})
			if err != nil {
				t.Fatal(err)
			}
			if err := dec.Decode(local); err != nil {
				t.Errorf("render %s: %s: Traefik cannot decode the settings: %v", r.name, m, err)
				continue
			}
			if _, err := edgepass.New(context.Background(), http.NotFoundHandler(), cfg, m.Name); err != nil {
				t.Errorf("render %s: %s: the plugin refuses the settings: %v", r.name, m, err)
			}
		}
	}
	// Without a trust anchor (a first install) no Middleware is rendered:
	// one without anchors would fail to load.
	if n := len(objectsOfKind(renderChart(t, "default").objs, "Middleware")); n != 0 {
		t.Errorf("render default (no edge.trustAnchors): %d Middlewares rendered", n)
	}
}

// TestHelmRefusesBadValues: values that would install something broken
// fail `helm template` with a message naming the problem.
func TestHelmRefusesBadValues(t *testing.T) {
	anchor := "edge.trustAnchors={" + testAnchor + "}"
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"misspelled value", []string{"--set", "replicaz=3"}, "replicaz"},
		{"misspelled plugin setting", []string{"--set", anchor, "--set-json", `middlewares=[{"name":"a","settings":{"allowedGroup":["x"]}}]`}, `unknown plugin setting "allowedGroup"`},
		{"chart-owned plugin setting", []string{"--set", anchor, "--set-json", `middlewares=[{"name":"a","settings":{"loginURL":"https://x"}}]`}, "set by the chart"},
		{"inline NATS secret", []string{"--set", anchor, "--set-json", `edge.settings={"nats":{"password":"x"}}`}, "set by the chart"},
		{"duplicate middleware", []string{"--set", anchor, "--set-json", `middlewares=[{"name":"a"},{"name":"a"}]`}, "listed twice"},
		{"publicURL with a path", []string{"--set", "publicURL=https://example.com/auth"}, "publicURL"},
		{"no client secret", []string{"--set", "oidc.clientSecret.secretName="}, "clientSecret"},
		{"no encryption key", []string{"--set", "keys.encryptionKey.key="}, "encryptionKey"},
		{"login behind the login", []string{"--set", anchor, "--set-json", `ingressRoute.middlewares=[{"name":"sso"}]`}, "never need a login"},
		{"PDB blocking every drain", []string{"--set", "replicaCount=2", "--set", "podDisruptionBudget.minAvailable=2"}, "minAvailable"},
		{"malformed trust anchor", []string{"--set", "edge.trustAnchors={change-me-trust-anchor}"}, "trustAnchors"},
		{"plain NATS", []string{"--set", "nats.urls={http://nats:4222}"}, "nats"},
		{"extraConfig taking a mounted file's place", []string{"--set-json", `extraConfig={"admin":{"tokenFile":"/tmp/x"}}`}, "extraConfig.admin.tokenFile is set by the chart"},
	} {
		args := append([]string{"template", helmRelease, chartPath(t), "--namespace", helmNamespace}, c.args...)
		_, err := runHelm(t, args...)
		if err == nil {
			t.Errorf("%s: helm template %v succeeded", c.name, c.args)
		} else if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: the error does not name %q:\n%v", c.name, c.want, err)
		}
	}
}
