package deploy

// The values files deploy/helm ships for the official Traefik and NATS
// charts. Those charts cannot be fetched here (no chart repository), so the
// files are checked against what the charts' templates do with them, the
// edgepass chart's values, the plugin's file layout and
// natsedge.EdgePermissions; EDGEPASS_TRAEFIK_CHART and EDGEPASS_NATS_CHART,
// pointing at local copies of the charts, also render them.

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/edgepass/edgepass/integration/harness"
	"github.com/edgepass/edgepass/plugin/natsedge"
)

// pluginModule is the plugin's module path (the root go.mod), which Traefik
// loads it by.
func pluginModule(t testing.TB) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^module\s+(\S+)`).FindSubmatch(data)
	if m == nil {
		t.Fatal("go.mod has no module line")
	}
	return string(m[1])
}

// TestTraefikValuesLoadThePlugin: both Traefik values files load the plugin
// under the name the chart's Middlewares use, from the plugin's module (the
// catalog one at the chart's appVersion; the local one at
// /plugins-local/src/<module>, from a volume the values define), allow the
// Middlewares' namespace to be used cross-namespace, and mount the NATS
// password from a Secret and the CA from a ConfigMap, both of which
// deploy/helm/README.md tells operators to create.
func TestTraefikValuesLoadThePlugin(t *testing.T) {
	chart := readValues(t, filepath.Join(chartPath(t), "values.yaml"))
	pluginName := str(chart, "edge", "pluginName")
	module := pluginModule(t)
	_, appVersion := chartMeta(t)
	readme, err := os.ReadFile(filepath.Join(helmDir(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, vf := range traefikValuesFiles {
		v := readValues(t, filepath.Join(helmDir(t), vf))
		plugins, _ := get(v, "experimental", "plugins").(obj)
		locals, _ := get(v, "experimental", "localPlugins").(obj)
		switch {
		case len(plugins) == 1 && len(locals) == 0:
			p, _ := plugins[pluginName].(obj)
			if p == nil {
				t.Errorf("%s: experimental.plugins has no %q (edge.pluginName of the chart)", vf, pluginName)
				continue
			}
			if str(p, "moduleName") != module || str(p, "version") != appVersion {
				t.Errorf("%s: plugin %s@%s, want %s@%s (the chart's appVersion)", vf, str(p, "moduleName"), str(p, "version"), module, appVersion)
			}
		case len(locals) == 1 && len(plugins) == 0:
			p, _ := locals[pluginName].(obj)
			if p == nil {
				t.Errorf("%s: experimental.localPlugins has no %q (edge.pluginName of the chart)", vf, pluginName)
				continue
			}
			if str(p, "moduleName") != module {
				t.Errorf("%s: moduleName %q, want %q", vf, str(p, "moduleName"), module)
			}
			// Traefik's working directory in its image is /; it loads
			// ./plugins-local/src/<moduleName>.
			if want := "/plugins-local/src/" + module; str(p, "mountPath") != want {
				t.Errorf("%s: mountPath %q, want %q", vf, str(p, "mountPath"), want)
			}
			if str(p, "type") != "localPath" {
				t.Errorf("%s: type %q; localPath mounts a volume of deployment.additionalVolumes", vf, str(p, "type"))
			}
			checkLocalPluginVolume(t, vf, v, str(p, "volumeName"))
		default:
			t.Errorf("%s: want exactly one of experimental.plugins and experimental.localPlugins, with one plugin", vf)
			continue
		}
		if b, _ := get(v, "providers", "kubernetesCRD", "allowCrossNamespace").(bool); !b {
			t.Errorf("%s: providers.kubernetesCRD.allowCrossNamespace is off: apps outside namespace %s cannot use its Middlewares", vf, helmNamespace)
		}
		if dir := os.Getenv("EDGEPASS_TRAEFIK_CHART"); dir != "" {
			files := []string{str(chart, "edge", "nats", "passwordFile"), str(chart, "edge", "nats", "caFile")}
			if len(locals) > 0 {
				// Traefik reads the plugin's manifest and sources there.
				files = append(files, "/plugins-local/src/"+module+"/.traefik.yml", "/plugins-local/src/"+module+"/plugin/edgepass.go")
			}
			renderTraefikChart(t, dir, vf, module, pluginName, files)
		}
		tb := &base{traefik: v}
		for _, f := range []struct{ setting, kind string }{{"passwordFile", "Secret"}, {"caFile", "ConfigMap"}} {
			p := str(chart, "edge", "nats", f.setting)
			src, err := traefikFile(tb, p)
			if err != nil {
				t.Errorf("%s: edge.nats.%s %s: %v", vf, f.setting, p, err)
				continue
			}
			if src.Kind != f.kind {
				t.Errorf("%s: %s comes from a %s, want a %s", vf, p, src.Kind, f.kind)
			}
			if !strings.Contains(string(readme), src.Name) || !strings.Contains(string(readme), "-n traefik create") {
				t.Errorf("%s: %s %s must be created in namespace traefik; deploy/helm/README.md does not say how", vf, src.Kind, src.Name)
			}
		}
	}
}

// renderTraefikChart renders the official Traefik chart (a local copy) with
// a values file of deploy/helm: the objects decode strictly (kinds outside
// the scheme, such as Gateway API ones, are only listed), the container
// loads the plugin, and the files the Middlewares name are mounted.
func renderTraefikChart(t *testing.T, dir, vf, module, pluginName string, files []string) {
	out, err := runHelm(t, "template", "traefik", dir, "--namespace", "traefik", "-f", filepath.Join(helmDir(t), vf))
	if err != nil {
		t.Errorf("%s: %v", vf, err)
		return
	}
	objs, err := splitManifests("traefik chart with "+vf, []byte(out))
	if err != nil {
		t.Fatal(err)
	}
	var checked []*kubeObject
	for _, o := range objs {
		if kubeScheme.Recognizes(o.GVK) || o.GVK.Group == "traefik.io" {
			checked = append(checked, o)
		} else {
			t.Logf("%s: %s (%s) not checked", vf, o, o.GVK.Group)
		}
	}
	for _, e := range strictDecode(t, checked) {
		t.Errorf("traefik chart with %s: %v", vf, e)
	}
	for _, e := range checkWorkloads(checked) {
		t.Errorf("traefik chart with %s: %v", vf, e)
	}
	d := findObject(t, objs, "Deployment", "", "traefik")
	c := podContainer(d.Map)
	args := fmt.Sprint(c["args"])
	if !strings.Contains(args, "lugins."+pluginName+".moduleName="+module) {
		t.Errorf("traefik chart with %s: the container does not load %s as %s: %s", vf, module, pluginName, args)
	}
	for _, f := range files {
		if _, err := resolveFile(f, list(c["volumeMounts"]), podVolume(d.Map)); err != nil {
			t.Errorf("traefik chart with %s: %v", vf, err)
		}
	}
}

// pluginFiles are the files Traefik loads the plugin from, relative to the
// repository root: go.mod, .traefik.yml and harness.PluginSources.
func pluginFiles(t testing.TB) []string {
	t.Helper()
	files, err := harness.PluginSources(repoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := range files {
		files[i] = filepath.ToSlash(files[i])
	}
	return append([]string{"go.mod", ".traefik.yml"}, files...)
}

// checkLocalPluginVolume: the local plugin's volume projects every file
// Traefik loads the plugin from, and nothing else, from the keys
// deploy/helm/plugin-source.sh writes; the ConfigMap that script prints
// decodes strictly, stays under the 1 MiB object limit and, laid out by the
// items, is the plugin tree harness.CopyPluginTo makes.
func checkLocalPluginVolume(t *testing.T, vf string, v obj, volumeName string) {
	var vol obj
	for _, x := range list(get(v, "deployment", "additionalVolumes")) {
		if str(x, "name") == volumeName {
			vol, _ = x.(obj)
		}
	}
	if vol == nil {
		t.Errorf("%s: the local plugin's volume %q is not in deployment.additionalVolumes (the Traefik chart refuses that)", vf, volumeName)
		return
	}
	cmName := str(vol, "configMap", "name")
	if cmName == "" {
		t.Errorf("%s: volume %s is not a ConfigMap", vf, volumeName)
		return
	}
	items := map[string]string{} // path -> key
	for _, it := range list(get(vol, "configMap", "items")) {
		items[str(it, "path")] = str(it, "key")
	}
	want := pluginFiles(t)
	var got []string
	for p := range items {
		got = append(got, p)
	}
	sort.Strings(got)
	missing, extra := setDiff(want, got)
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("%s: volume %s lacks %v and has %v beyond the files Traefik loads the plugin from; regenerate the items (key = path with / written __)", vf, volumeName, missing, extra)
	}

	script := filepath.Join(helmDir(t), "plugin-source.sh")
	out, err := exec.Command("bash", script, "traefik", cmName).Output()
	if err != nil {
		t.Fatalf("%s: %v", script, err)
	}
	if len(out) > 1<<20-4096 {
		t.Errorf("plugin-source.sh: the ConfigMap is %d bytes, over Kubernetes' 1 MiB object limit", len(out))
	}
	objs, err := splitManifests("plugin-source.sh", out)
	if err != nil {
		t.Fatal(err)
	}
	if errs := strictDecode(t, objs); len(errs) > 0 {
		t.Fatalf("plugin-source.sh: %v", errs)
	}
	if len(objs) != 1 || objs[0].GVK.Kind != "ConfigMap" || objs[0].Name != cmName || objs[0].NS != "traefik" {
		t.Fatalf("plugin-source.sh printed %v, want ConfigMap traefik/%s", objs, cmName)
	}
	cm := objs[0].Typed.(*corev1.ConfigMap)
	tree := t.TempDir()
	for p, key := range items {
		data, ok := cm.Data[key]
		if !ok {
			t.Errorf("%s: item %s reads key %s, which plugin-source.sh does not write", vf, p, key)
			continue
		}
		if path.Clean(p) != p || strings.HasPrefix(p, "/") || strings.HasPrefix(p, "..") {
			t.Errorf("%s: item path %q", vf, p)
			continue
		}
		dst := filepath.Join(tree, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if len(cm.Data) != len(items) {
		t.Errorf("plugin-source.sh writes %d keys, the items use %d", len(cm.Data), len(items))
	}
	ref := t.TempDir()
	if err := harness.CopyPluginTo(repoRoot(t), ref); err != nil {
		t.Fatal(err)
	}
	refRoot := filepath.Join(ref, "src", filepath.FromSlash(harness.PluginModule))
	for _, f := range want {
		a, err1 := os.ReadFile(filepath.Join(refRoot, filepath.FromSlash(f)))
		b, err2 := os.ReadFile(filepath.Join(tree, filepath.FromSlash(f)))
		if err1 != nil || err2 != nil {
			t.Errorf("%s: %v %v", f, err1, err2)
			continue
		}
		// A YAML block scalar keeps one final newline.
		if strings.TrimRight(string(a), "\n") != strings.TrimRight(string(b), "\n") {
			t.Errorf("%s: the file Traefik would read from the ConfigMap differs from the source", f)
		}
	}
}

// natsValues is deploy/helm/nats-values.yaml.
func natsValues(t testing.TB) obj {
	t.Helper()
	return readValues(t, filepath.Join(helmDir(t), "nats-values.yaml"))
}

// envRef is the `<< $VAR >>` the NATS chart writes unquoted into nats.conf,
// so the value comes from the container's environment.
var envRef = regexp.MustCompile(`^<<\s*\$([A-Z_][A-Z0-9_]*)\s*>>$`)

// TestNATSValuesForTheOfficialChart: nats-values.yaml runs a 3-node cluster
// with JetStream, TLS on the client and route ports with the nats-tls CA,
// route authorization, monitoring on loopback only (no monitor port, probes
// in the pod), no nats-box; its users are the daemon and the edge user of
// the chart's Middlewares, whose permissions are exactly
// natsedge.EdgePermissions; every password comes from Secret keys through
// the environment (never the ConfigMap), and the daemon's password is the
// key the edgepass chart mounts; the servers are where the chart's
// nats.urls point.
func TestNATSValuesForTheOfficialChart(t *testing.T) {
	v := natsValues(t)
	chart := readValues(t, filepath.Join(chartPath(t), "values.yaml"))
	ha := mergeValues(chart, readValues(t, filepath.Join(chartPath(t), "values-ha.yaml")))

	if b, _ := get(v, "config", "jetstream", "enabled").(bool); !b {
		t.Error("JetStream is not enabled")
	}
	if b, _ := get(v, "config", "jetstream", "fileStore", "enabled").(bool); !b {
		t.Error("JetStream has no file store: buckets would not survive a restart")
	}
	if b, _ := get(v, "config", "cluster", "enabled").(bool); !b {
		t.Error("no cluster")
	}
	replicas, _ := get(v, "config", "cluster", "replicas").(int)
	if n, _ := get(ha, "nats", "replicas").(int); replicas < n || replicas < 3 {
		t.Errorf("%d NATS servers, values-ha.yaml asks for bucket replicas %d", replicas, n)
	}
	for _, p := range [][]string{{"config", "nats", "tls"}, {"config", "cluster", "tls"}} {
		if b, _ := get(v, append(p, "enabled")...).(bool); !b || str(v, append(p, "secretName")...) == "" {
			t.Errorf("%s: TLS not enabled with a certificate Secret", strings.Join(p, "."))
		}
	}
	if b, _ := get(v, "tlsCA", "enabled").(bool); !b || str(v, "tlsCA", "secretName") == "" {
		t.Error("tlsCA: the servers do not verify route peers against the cluster CA")
	}
	if str(v, "tlsCA", "secretName") != str(chart, "nats", "ca", "secretName") || str(v, "tlsCA", "key") != str(chart, "nats", "ca", "key") {
		t.Errorf("the daemon trusts %s/%s (values nats.ca), the servers use CA %s/%s", str(chart, "nats", "ca", "secretName"), str(chart, "nats", "ca", "key"), str(v, "tlsCA", "secretName"), str(v, "tlsCA", "key"))
	}
	if b, _ := get(v, "config", "monitor", "enabled").(bool); b {
		t.Error("config.monitor is enabled: the chart binds it on all addresses and exposes a port")
	}
	if h := str(v, "config", "merge", "http"); !strings.HasPrefix(h, "127.0.0.1:") {
		t.Errorf("monitoring at %q, want 127.0.0.1 only", h)
	}
	for _, p := range []string{"startupProbe", "readinessProbe", "livenessProbe"} {
		cmd := list(get(v, "container", "merge", p, "exec", "command"))
		if len(cmd) == 0 || !strings.Contains(fmt.Sprint(cmd), "http://127.0.0.1:") {
			t.Errorf("container.merge.%s does not probe monitoring from inside the pod", p)
		}
	}
	if b, ok := get(v, "natsBox", "enabled").(bool); !ok || b {
		t.Error("natsBox is enabled: one more client with no credential")
	}

	env, _ := get(v, "container", "env").(obj)
	secretEnv := map[string][2]string{}
	for k, e := range env {
		if r := get(e, "valueFrom", "secretKeyRef"); r != nil {
			secretEnv[k] = [2]string{str(r, "name"), str(r, "key")}
		}
	}
	fromSecret := func(what string, val any) (string, [2]string) {
		s, _ := val.(string)
		m := envRef.FindStringSubmatch(s)
		if m == nil {
			t.Errorf("%s is %q, not << $VAR >>: the password would sit in the ConfigMap", what, s)
			return "", [2]string{}
		}
		ref, ok := secretEnv[m[1]]
		if !ok {
			t.Errorf("%s: $%s is not read from a Secret in container.env", what, m[1])
		}
		return m[1], ref
	}

	// Route authorization, routes carrying its credentials.
	fromSecret("cluster route password", get(v, "config", "cluster", "merge", "authorization", "password"))
	routeUser := str(v, "config", "cluster", "merge", "authorization", "user")
	if routeUser == "" {
		t.Error("no route authorization user")
	}
	routes := str(v, "config", "cluster", "merge", "routes")
	routeVars := regexp.MustCompile(`\$([A-Z_][A-Z0-9_]*)`).FindAllStringSubmatch(routes, -1)
	if len(routeVars) != replicas {
		t.Errorf("routes %q: want one per server (%d)", routes, replicas)
	}
	for i, rv := range routeVars {
		u := str(env, rv[1])
		want := fmt.Sprintf("tls://%s:$(ROUTE_PASSWORD)@nats-%d.nats-headless.%s.svc.cluster.local:6222", routeUser, i, helmNamespace)
		if u != want {
			t.Errorf("route %d: $%s = %q, want %q", i, rv[1], u, want)
		}
	}

	// Users: the daemon (everything) and the edge (exactly its permissions).
	edgeUser := str(chart, "edge", "nats", "user")
	bucket := str(chart, "nats", "edgeBucket")
	if b := str(chart, "edge", "nats", "bucket"); b != "" {
		bucket = b
	}
	users := map[string]obj{}
	var userNames []string
	for _, u := range list(get(v, "config", "merge", "authorization", "users")) {
		uo, _ := u.(obj)
		users[str(uo, "user")] = uo
		userNames = append(userNames, str(uo, "user"))
	}
	if len(users) != 2 || users[str(chart, "nats", "user")] == nil || users[edgeUser] == nil {
		t.Fatalf("users %v, want exactly the daemon's (%s) and the edge's (%s)", userNames, str(chart, "nats", "user"), edgeUser)
	}
	_, daemonRef := fromSecret("daemon password", users[str(chart, "nats", "user")]["password"])
	if daemonRef != [2]string{str(chart, "nats", "password", "secretName"), str(chart, "nats", "password", "key")} {
		t.Errorf("NATS takes the daemon's password from Secret %s key %s, the chart mounts %s key %s", daemonRef[0], daemonRef[1], str(chart, "nats", "password", "secretName"), str(chart, "nats", "password", "key"))
	}
	if get(users[str(chart, "nats", "user")], "permissions") != nil {
		t.Error("the daemon's user has permissions: it owns the buckets and needs the whole account")
	}
	_, edgeRef := fromSecret("edge password", users[edgeUser]["password"])
	wantPub, wantSub := natsedge.EdgePermissions(bucket, edgeUser)
	for _, p := range []struct {
		dir  string
		want []string
	}{{"publish", wantPub}, {"subscribe", wantSub}} {
		var got []string
		for _, s := range list(get(users[edgeUser], "permissions", p.dir, "allow")) {
			got = append(got, fmt.Sprint(s))
		}
		sort.Strings(got)
		want := append([]string(nil), p.want...)
		sort.Strings(want)
		if missing, extra := setDiff(want, got); len(missing) > 0 || len(extra) > 0 {
			t.Errorf("user %s %s: lacks %v, has %v beyond natsedge.EdgePermissions(%q, %q)", edgeUser, p.dir, missing, extra, bucket, edgeUser)
		}
		if get(users[edgeUser], "permissions", p.dir, "deny") != nil {
			t.Errorf("user %s %s: a deny list; the allow list is the whole permission", edgeUser, p.dir)
		}
	}
	if len(secretEnv) != 3 || edgeRef[0] == "" {
		t.Errorf("env from Secrets %v: want the daemon's, the edge's and the route password", secretEnv)
	}

	// The chart's nats.urls reach these servers: Service <fullname> in the
	// release's namespace, client port, TLS.
	full := str(v, "fullnameOverride")
	for _, u := range list(get(chart, "nats", "urls")) {
		if want := fmt.Sprintf("tls://%s.%s.svc.cluster.local:%v", full, helmNamespace, get(v, "config", "nats", "port")); fmt.Sprint(u) != want {
			t.Errorf("edgepass chart nats.urls %v, the NATS values serve %s", u, want)
		}
	}
	if adv := str(env, "CLUSTER_ADVERTISE"); adv != fmt.Sprintf("$(POD_NAME).nats-headless.%s.svc.cluster.local:6222", helmNamespace) {
		t.Errorf("CLUSTER_ADVERTISE %q: peers would not find each other by the certificate's names", adv)
	}

	if dir := os.Getenv("EDGEPASS_NATS_CHART"); dir != "" {
		renderNATSChart(t, dir)
	}
}

// natsChartObjects renders the official NATS chart (a local copy in dir)
// with nats-values.yaml.
func natsChartObjects(t *testing.T, dir string) []*kubeObject {
	t.Helper()
	out, err := runHelm(t, "template", "nats", dir, "--namespace", helmNamespace, "-f", filepath.Join(helmDir(t), "nats-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := splitManifests("nats chart", []byte(out))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// renderNATSChart renders the official NATS chart (a local copy) with
// nats-values.yaml: every object decodes strictly, nats.conf parses with
// the pod's environment, and holds the users, TLS and monitoring above.
func renderNATSChart(t *testing.T, dir string) {
	objs := natsChartObjects(t, dir)
	for _, e := range strictDecode(t, objs) {
		t.Errorf("nats chart: %v", e)
	}
	for _, e := range append(checkWorkloads(objs), checkRestricted(objs)...) {
		t.Errorf("nats chart: %v", e)
	}
	cm := findObject(t, objs, "ConfigMap", "", "nats-config")
	text, _ := get(cm.Map, "data", "nats.conf").(string)
	sts := findObject(t, objs, "StatefulSet", "", "nats")
	env := map[string]string{"POD_NAME": "nats-0", "SERVER_NAME": "nats-0"}
	c := podContainer(sts.Map)
	for _, e := range list(c["env"]) {
		k := str(e, "name")
		if get(e, "valueFrom", "secretKeyRef") != nil {
			env[k] = "secret-" + strings.ToLower(k)
		} else if _, set := env[k]; !set {
			env[k] = kubeExpand(str(e, "value"), env)
		}
	}
	m, err := parseConf(text, env)
	if err != nil {
		t.Fatalf("nats chart: nats.conf does not parse: %v\n%s", err, text)
	}
	m = lower(m).(map[string]any)
	if h := str(m, "http"); !strings.HasPrefix(h, "127.0.0.1:") || m["http_port"] != nil || m["https_port"] != nil {
		t.Errorf("nats chart: monitoring %v / http_port %v", h, m["http_port"])
	}
	for _, b := range [][]string{{"tls"}, {"cluster", "tls"}} {
		if str(m, append(b, "ca_file")...) == "" || str(m, append(b, "cert_file")...) == "" {
			t.Errorf("nats chart: %s lacks ca_file or cert_file", strings.Join(b, "."))
		}
	}
	if n := len(confStrings(get(m, "cluster", "routes"))); n != 3 {
		t.Errorf("nats chart: %d routes", n)
	}
	for _, r := range confStrings(get(m, "cluster", "routes")) {
		if !strings.Contains(r, "route:secret-route_password@") {
			t.Errorf("nats chart: route %q without the route credentials", r)
		}
	}
	if confUser(m, "traefik") == nil || confUser(m, "daemon") == nil {
		t.Errorf("nats chart: users missing in %v", get(m, "authorization"))
	}
}

// TestVersionsAgree: one release number everywhere: Chart.yaml's version and
// appVersion, the chart's image tag, the plugin version the Traefik values
// load, and the Kubernetes base's image and plugin version.
func TestVersionsAgree(t *testing.T) {
	version, appVersion := chartMeta(t)
	if !regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`).MatchString(appVersion) || "v"+version != appVersion {
		t.Errorf("Chart.yaml: version %q, appVersion %q: want appVersion = v<version>, a release tag", version, appVersion)
	}
	chart := readValues(t, filepath.Join(chartPath(t), "values.yaml"))
	if tag := str(chart, "image", "tag"); tag != "" && tag != appVersion {
		t.Errorf("values image.tag %q differs from appVersion %q", tag, appVersion)
	}
	tv := readValues(t, filepath.Join(helmDir(t), "traefik-values.yaml"))
	if got := str(tv, "experimental", "plugins", "edgepass", "version"); got != appVersion {
		t.Errorf("traefik-values.yaml loads plugin %s, the chart is %s", got, appVersion)
	}
	b := loadBase(t)
	if got := str(b.traefik, "experimental", "plugins", "edgepass", "version"); got != appVersion {
		t.Errorf("deploy/kubernetes/traefik-values.yaml loads plugin %s, the chart is %s", got, appVersion)
	}
	w := b.workload(t, "Deployment", "edgepass", "edgepass")
	if img := str(w.container, "image"); !strings.HasSuffix(img, ":"+appVersion) {
		t.Errorf("deploy/kubernetes daemon image %s, the chart is %s", img, appVersion)
	}
}
