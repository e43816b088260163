package deploy

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// daemonConfig is the daemon's configuration file, found the way the pod
// finds it (--configFile in the args, through the volume mounts).
func daemonConfig(t testing.TB, b *base) obj {
	t.Helper()
	w := b.workload(t, "Deployment", "edgepass", "edgepass")
	var file string
	for _, a := range list(w.container["args"]) {
		if s, _ := a.(string); strings.HasPrefix(s, "--configFile=") {
			file = strings.TrimPrefix(s, "--configFile=")
		}
	}
	if file == "" {
		t.Fatalf("%s: no --configFile in the args", ref(w.o))
	}
	src, err := resolveFile(file, list(w.container["volumeMounts"]), w.volume)
	if err != nil {
		t.Fatalf("%s: %v", ref(w.o), err)
	}
	text, err := b.configMapValue(w.ns, src.Name, src.Key)
	if err != nil {
		t.Fatal(err)
	}
	var cfg obj
	if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
		t.Fatalf("the daemon's %s: %v", file, err)
	}
	return cfg
}

// middlewares are the base's Middleware objects that use the plugin.
func middlewares(b *base) []obj {
	var out []obj
	for _, m := range b.find("Middleware", "", "") {
		if get(m, "spec", "plugin", "edgepass") != nil {
			out = append(out, m)
		}
	}
	return out
}

func pluginConf(m obj) obj { c, _ := get(m, "spec", "plugin", "edgepass").(obj); return c }

// traefikFile resolves a file path inside the Traefik container through the
// Helm values' additionalVolumeMounts / deployment.additionalVolumes (and the
// chart's `volumes:` shorthand).
func traefikFile(b *base, file string) (fileSource, error) {
	mounts := list(b.traefik["additionalVolumeMounts"])
	vols := list(get(b.traefik, "deployment", "additionalVolumes"))
	for _, v := range list(b.traefik["volumes"]) {
		vo, _ := v.(obj)
		n := str(vo, "name")
		mounts = append(mounts, obj{"name": n, "mountPath": str(vo, "mountPath")})
		switch str(vo, "type") {
		case "secret":
			vols = append(vols, obj{"name": n, "secret": obj{"secretName": n}})
		case "configMap":
			vols = append(vols, obj{"name": n, "configMap": obj{"name": n}})
		}
	}
	return resolveFile(file, mounts, func(n string) obj {
		for _, v := range vols {
			if vo, ok := v.(obj); ok && str(vo, "name") == n {
				return vo
			}
		}
		return nil
	})
}

// edgeCredentials are the edge's NATS user and password as a Traefik pod
// has them: nats.user of the Middleware, the password from the Secret key
// mounted at nats.passwordFile.
func edgeCredentials(t testing.TB, b *base) (string, string) {
	t.Helper()
	mws := middlewares(b)
	if len(mws) == 0 {
		t.Fatal("the base has no Middleware using plugin.edgepass")
	}
	c := pluginConf(mws[0])
	user := str(c, "nats", "user")
	pf := str(c, "nats", "passwordFile")
	if pf == "" {
		t.Fatalf("%s: no nats.passwordFile", ref(mws[0]))
	}
	src, err := traefikFile(b, pf)
	if err != nil {
		t.Fatalf("%s: nats.passwordFile: %v", ref(mws[0]), err)
	}
	if src.Kind != "Secret" {
		t.Fatalf("%s: nats.passwordFile %s comes from a %s, want a Secret", ref(mws[0]), pf, src.Kind)
	}
	pw, err := b.secretValue(traefikNamespace, src.Name, src.Key)
	if err != nil {
		t.Fatalf("%s: nats.passwordFile %s: %v", ref(mws[0]), pf, err)
	}
	return user, pw
}

// edgeName is what the plugin names its edge: nats.edgeName, else
// nats.user, else "edge" (docs/contracts.md).
func edgeName(t testing.TB, b *base) string {
	t.Helper()
	c := pluginConf(middlewares(b)[0])
	for _, k := range []string{"edgeName", "user"} {
		if v := str(c, "nats", k); v != "" {
			return v
		}
	}
	return "edge"
}

// TestMonitoringNotExposed: the monitoring endpoint (which shows
// connections, routes and subjects) listens on loopback only or not at all,
// and no containerPort, Service or probe points at it.
func TestMonitoringNotExposed(t *testing.T) {
	b := loadBase(t)
	n := loadNATS(t, b)
	m := n.parsedConf(t)
	monitorPort := "8222"
	for _, k := range []string{"http", "https"} {
		v, ok := m[k]
		if !ok {
			continue
		}
		hp := fmt.Sprint(v)
		host, port, err := net.SplitHostPort(hp)
		if err != nil {
			host, port = "", hp // a bare port binds every address
		}
		monitorPort = port
		if !loopback(host) {
			t.Errorf("nats.conf %s: %s listens beyond loopback; bind it to 127.0.0.1 or drop it", k, hp)
		}
	}
	for _, k := range []string{"http_port", "https_port", "monitor_port"} {
		if v, ok := m[k]; ok {
			monitorPort = fmt.Sprint(v)
			if !loopback(str(m, "http_host")) {
				t.Errorf("nats.conf %s: %v listens beyond loopback (http_host %q)", k, v, str(m, "http_host"))
			}
		}
	}
	isMonitor := func(p any) bool {
		s := fmt.Sprint(p)
		return s == monitorPort || strings.Contains(strings.ToLower(s), "monitor")
	}
	for _, c := range list(get(n.w.pod, "spec", "containers")) {
		co, _ := c.(obj)
		for _, p := range list(co["ports"]) {
			if isMonitor(get(p, "containerPort")) || isMonitor(get(p, "name")) {
				t.Errorf("%s: container %s declares the monitoring port %v", ref(n.sts), str(co, "name"), p)
			}
		}
		for _, probe := range []string{"startupProbe", "readinessProbe", "livenessProbe"} {
			pr := get(co, probe)
			if pr == nil {
				continue
			}
			for _, h := range []string{"httpGet", "tcpSocket", "grpc"} {
				if p := get(pr, h, "port"); p != nil {
					if isMonitor(p) {
						t.Errorf("%s: %s is a %s on the monitoring port %v, which the kubelet cannot reach on loopback (use exec)", ref(n.sts), probe, h, p)
					}
				}
			}
		}
	}
	podLabels := n.w.labels()
	for _, s := range b.find("Service", n.w.ns, "") {
		if !selects(stringMap(get(s, "spec", "selector")), podLabels) {
			continue
		}
		for _, p := range list(get(s, "spec", "ports")) {
			if isMonitor(get(p, "port")) || isMonitor(get(p, "targetPort")) || isMonitor(get(p, "name")) {
				t.Errorf("%s exposes the monitoring port: %v", ref(s), p)
			}
		}
	}
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// selects reports whether a Service-style selector (labels, all must match)
// selects labels; an empty selector selects nothing.
func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// clusterScoped kinds have no namespace.
var clusterScoped = map[string]bool{
	"Namespace": true, "ClusterIssuer": true, "ClusterRole": true, "ClusterRoleBinding": true,
	"CustomResourceDefinition": true, "PersistentVolume": true, "StorageClass": true,
	"PriorityClass": true, "IngressClass": true, "ValidatingWebhookConfiguration": true,
	"MutatingWebhookConfiguration": true,
}

// TestEveryNamespaceIsCreated: `kubectl apply -k deploy/kubernetes` on an
// empty cluster fails on an object whose namespace does not exist; every
// namespace an object lives in, or that the base refers to, is created by
// the base.
func TestEveryNamespaceIsCreated(t *testing.T) {
	b := loadBase(t)
	created := map[string]bool{}
	for _, ns := range b.find("Namespace", "", "") {
		created[name(ns)] = true
	}
	if ns := str(b.kust, "namespace"); ns != "" && !created[ns] {
		t.Errorf("kustomization.yaml puts everything in namespace %q, which the base does not create", ns)
	}
	files := make([]string, 0, len(b.files))
	for f := range b.files {
		files = append(files, f)
	}
	sort.Strings(files)
	for _, f := range files {
		for _, o := range b.files[f] {
			k := str(o, "kind")
			if clusterScoped[k] {
				continue
			}
			ns := namespace(o)
			if str(b.kust, "namespace") != "" {
				ns = str(b.kust, "namespace")
			}
			switch {
			case ns == "":
				t.Errorf("%s: %s %s has no namespace; it would land in whatever namespace kubectl's context uses", f, k, name(o))
			case !created[ns]:
				t.Errorf("%s: %s %s is in namespace %q, which the base does not create", f, k, name(o), ns)
			}
		}
	}
	// References to namespaces.
	for _, o := range b.find("IngressRoute", "", "") {
		for _, r := range list(get(o, "spec", "routes")) {
			for _, m := range list(get(r, "middlewares")) {
				if ns := str(m, "namespace"); ns != "" && !created[ns] {
					t.Errorf("%s uses Middleware %s/%s, in a namespace the base does not create", ref(o), ns, str(m, "name"))
				}
			}
		}
	}
	for _, np := range b.find("NetworkPolicy", "", "") {
		for _, ns := range policyNamespaceNames(np) {
			if !created[ns] {
				t.Errorf("%s admits namespace %q, which the base does not create", ref(np), ns)
			}
		}
	}
	if !created[traefikNamespace] {
		t.Errorf("Traefik's namespace %q (deploy/README.md; it holds the edge's NATS password) is not created by the base", traefikNamespace)
	}
}

func policyNamespaceNames(np obj) []string {
	var out []string
	for _, r := range list(get(np, "spec", "ingress")) {
		for _, p := range list(get(r, "from")) {
			if ns := str(p, "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name"); ns != "" {
				out = append(out, ns)
			}
		}
	}
	return out
}

// TestNetworkPolicyRestrictsNATS: with the base's NetworkPolicies, the NATS
// pods accept the client port only from the Traefik pods and the daemon, the
// route port only from each other, and nothing else.
func TestNetworkPolicyRestrictsNATS(t *testing.T) {
	b := loadBase(t)
	n := loadNATS(t, b)
	daemon := b.workload(t, "Deployment", "edgepass", "edgepass")
	target := netPeer{ns: n.w.ns, labels: n.w.labels(), ip: "10.0.0.10"}
	named := map[string]int{}
	for _, p := range list(n.w.container["ports"]) {
		if pn := str(p, "name"); pn != "" {
			if v, ok := get(p, "containerPort").(int); ok {
				named[pn] = v
			}
		}
	}
	sources := []struct {
		name  string
		peer  netPeer
		ports []int // what it must reach; every other port must be closed
	}{
		{"a Traefik pod", netPeer{ns: traefikNamespace, labels: traefikPodLabels, ip: "10.0.1.1"}, []int{4222}},
		{"an edgepass daemon pod", netPeer{ns: daemon.ns, labels: daemon.labels(), ip: "10.0.2.1"}, []int{4222}},
		{"another NATS pod", netPeer{ns: n.w.ns, labels: n.w.labels(), ip: "10.0.0.11"}, []int{6222}},
		{"another pod in namespace " + n.w.ns, netPeer{ns: n.w.ns, labels: map[string]string{"app.kubernetes.io/name": "other"}, ip: "10.0.0.12"}, nil},
		{"another pod in Traefik's namespace", netPeer{ns: traefikNamespace, labels: map[string]string{"app.kubernetes.io/name": "other"}, ip: "10.0.1.2"}, nil},
		{"an app pod (namespace wiki)", netPeer{ns: "wiki", labels: map[string]string{"app": "wiki"}, ip: "10.0.3.1"}, nil},
		{"a pod of another namespace", netPeer{ns: "default", labels: map[string]string{}, ip: "10.0.4.1"}, nil},
		{"an address outside the cluster", netPeer{ip: "203.0.113.7"}, nil},
	}
	for _, s := range sources {
		t.Run(s.name, func(t *testing.T) {
			for _, port := range []int{4222, 6222, 8222} {
				want := false
				for _, p := range s.ports {
					want = want || p == port
				}
				got, why := ingressAllowed(b, target, named, s.peer, port)
				if got != want {
					t.Errorf("port %d: allowed=%v, want %v (%s)", port, got, want, why)
				}
			}
		})
	}
}

type netPeer struct {
	ns     string // "" = not a pod
	labels map[string]string
	ip     string
}

// ingressAllowed evaluates the base's NetworkPolicies as Kubernetes does for
// a TCP connection from src to port of the pod target.
func ingressAllowed(b *base, target netPeer, named map[string]int, src netPeer, port int) (bool, string) {
	isolated := false
	for _, np := range b.find("NetworkPolicy", target.ns, "") {
		sel, _ := get(np, "spec", "podSelector").(obj)
		if !selectorMatches(sel, target.labels) {
			continue
		}
		types := list(get(np, "spec", "policyTypes"))
		hasIngress := len(types) == 0
		for _, ty := range types {
			hasIngress = hasIngress || ty == "Ingress"
		}
		if !hasIngress {
			continue
		}
		isolated = true
		for i, r := range list(get(np, "spec", "ingress")) {
			if !rulePort(r, named, port) {
				continue
			}
			from := list(get(r, "from"))
			if len(from) == 0 {
				return true, fmt.Sprintf("%s ingress[%d] has no from: every source", ref(np), i)
			}
			for _, p := range from {
				if peerMatches(b, np, p, src) {
					return true, fmt.Sprintf("%s ingress[%d] admits it", ref(np), i)
				}
			}
		}
	}
	if !isolated {
		return true, "no NetworkPolicy selects the NATS pods: everything may connect"
	}
	return false, "no ingress rule admits it"
}

func rulePort(r any, named map[string]int, port int) bool {
	ports := list(get(r, "ports"))
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		if proto := str(p, "protocol"); proto != "" && proto != "TCP" {
			continue
		}
		var lo int
		switch v := get(p, "port").(type) {
		case nil:
			return true
		case int:
			lo = v
		case string:
			if n, err := strconv.Atoi(v); err == nil {
				lo = n
			} else {
				lo = named[v]
			}
		}
		hi := lo
		if e, ok := get(p, "endPort").(int); ok {
			hi = e
		}
		if port >= lo && port <= hi {
			return true
		}
	}
	return false
}

func peerMatches(b *base, np obj, p any, src netPeer) bool {
	if ipb := get(p, "ipBlock"); ipb != nil {
		_, cidr, err := net.ParseCIDR(str(ipb, "cidr"))
		ip := net.ParseIP(src.ip)
		if err != nil || ip == nil || !cidr.Contains(ip) {
			return false
		}
		for _, e := range list(get(ipb, "except")) {
			if _, ex, err := net.ParseCIDR(fmt.Sprint(e)); err == nil && ex.Contains(ip) {
				return false
			}
		}
		return true
	}
	if src.ns == "" {
		return false // pod and namespace selectors only match pods
	}
	podSel, hasPod := get(p, "podSelector").(obj)
	nsSel, hasNS := get(p, "namespaceSelector").(obj)
	if get(p, "podSelector") != nil && !hasPod {
		hasPod, podSel = true, obj{}
	}
	if get(p, "namespaceSelector") != nil && !hasNS {
		hasNS, nsSel = true, obj{}
	}
	if !hasNS && src.ns != namespace(np) {
		return false
	}
	if hasNS {
		nsLabels := map[string]string{"kubernetes.io/metadata.name": src.ns}
		for _, ns := range b.find("Namespace", "", src.ns) {
			for k, v := range stringMap(get(ns, "metadata", "labels")) {
				nsLabels[k] = v
			}
		}
		if !selectorMatches(nsSel, nsLabels) {
			return false
		}
	}
	if hasPod && !selectorMatches(podSel, src.labels) {
		return false
	}
	return hasPod || hasNS
}

// selectorMatches applies a LabelSelector (matchLabels, matchExpressions);
// an empty selector matches everything.
func selectorMatches(sel obj, labels map[string]string) bool {
	for k, v := range stringMap(sel["matchLabels"]) {
		if labels[k] != v {
			return false
		}
	}
	for _, e := range list(sel["matchExpressions"]) {
		k := str(e, "key")
		val, has := labels[k]
		in := false
		for _, v := range list(get(e, "values")) {
			in = in || fmt.Sprint(v) == val
		}
		switch str(e, "operator") {
		case "In":
			if !has || !in {
				return false
			}
		case "NotIn":
			if has && in {
				return false
			}
		case "Exists":
			if !has {
				return false
			}
		case "DoesNotExist":
			if has {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// secretKeys are plugin settings that hold a secret inline.
var secretKeys = map[string]bool{"password": true, "token": true, "nkeyseed": true, "seed": true, "clientsecret": true, "secret": true}

// TestMiddlewareHoldsNoInlineSecret: Traefik's API and dashboard show every
// Middleware setting, so the plugin's settings hold no password, token or
// seed (inline or as a urn:k8s:secret reference Traefik resolves into them);
// the password comes from nats.passwordFile, a Secret the Traefik pods mount
// (traefik-values.yaml), over TLS.
func TestMiddlewareHoldsNoInlineSecret(t *testing.T) {
	b := loadBase(t)
	mws := middlewares(b)
	if len(mws) == 0 {
		t.Fatal("the base has no Middleware using plugin.edgepass")
	}
	readme, _ := os.ReadFile(filepath.Join(deployDir(t), "..", "README.md"))
	var first string
	for _, m := range mws {
		c := pluginConf(m)
		walk(c, "", func(path string, v any) {
			key := strings.ToLower(path[strings.LastIndex(path, ".")+1:])
			if s, ok := v.(string); ok && strings.HasPrefix(strings.ToLower(s), "urn:k8s:secret") {
				t.Errorf("%s: %s = %q: Traefik resolves the Secret into the setting, which its API then shows", ref(m), path, s)
			} else if secretKeys[key] && fmt.Sprint(v) != "" {
				t.Errorf("%s: %s holds a secret inline; use the *File setting", ref(m), path)
			}
		})
		if str(c, "trustAnchors") == "" && len(list(c["trustAnchors"])) == 0 {
			t.Errorf("%s: no trustAnchors: the plugin refuses nats.urls without it", ref(m))
		}
		urls := confStrings(get(c, "nats", "urls"))
		if len(urls) == 0 {
			t.Errorf("%s: no nats.urls", ref(m))
		}
		for _, u := range urls {
			for _, one := range strings.Split(u, ",") {
				if !strings.HasPrefix(strings.TrimSpace(one), "tls://") {
					t.Errorf("%s: nats.urls %q is not tls://: the password would cross the network in clear", ref(m), one)
				}
			}
		}
		if str(c, "nats", "user") == "" {
			t.Errorf("%s: no nats.user (one NATS user per edge)", ref(m))
		}
		for _, f := range []struct{ setting, kind string }{{"passwordFile", "Secret"}, {"caFile", ""}} {
			file := str(c, "nats", f.setting)
			if file == "" {
				t.Errorf("%s: no nats.%s", ref(m), f.setting)
				continue
			}
			src, err := traefikFile(b, file)
			if err != nil {
				t.Errorf("%s: nats.%s %s is not mounted by traefik-values.yaml: %v", ref(m), f.setting, file, err)
				continue
			}
			if f.kind != "" && src.Kind != f.kind {
				t.Errorf("%s: nats.%s %s comes from a %s, want a %s", ref(m), f.setting, file, src.Kind, f.kind)
			}
			var err2 error
			if src.Kind == "Secret" {
				_, err2 = b.secretValue(traefikNamespace, src.Name, src.Key)
			} else {
				_, err2 = b.configMapValue(traefikNamespace, src.Name, src.Key)
			}
			if err2 != nil {
				// Not in the base: only acceptable for an optional source
				// the README tells the operator to create.
				if !src.Optional || !strings.Contains(string(readme), src.Name) {
					t.Errorf("%s: nats.%s %s: %v (and it is not an optional source deploy/README.md tells how to create)", ref(m), f.setting, file, err2)
				}
			}
		}
		// One configuration for every Middleware: one connection, one
		// consumer, one credential per Traefik replica.
		sig := fmt.Sprint(get(c, "nats"), c["trustAnchors"])
		if first == "" {
			first = sig
		} else if sig != first {
			t.Errorf("%s: its nats settings or trustAnchors differ from the other Middleware's", ref(m))
		}
	}
}

func walk(v any, path string, f func(path string, v any)) {
	switch x := v.(type) {
	case obj:
		for k, e := range x {
			p := k
			if path != "" {
				p = path + "." + k
			}
			walk(e, p, f)
		}
	case []any:
		for i, e := range x {
			walk(e, fmt.Sprintf("%s[%d]", path, i), f)
		}
	default:
		f(path, v)
	}
}

// TestDaemonUsesTLSAndPasswordFile: the daemon reaches NATS over TLS,
// verifying the servers with the CA of their certificate, as the NATS user
// that owns the buckets, with the password from a mounted Secret that holds
// what nats.conf expects.
func TestDaemonUsesTLSAndPasswordFile(t *testing.T) {
	b := loadBase(t)
	n := loadNATS(t, b)
	m := n.parsedConf(t)
	cfg := daemonConfig(t, b)
	w := b.workload(t, "Deployment", "edgepass", "edgepass")
	if enabled, _ := get(cfg, "nats", "embedded", "enabled").(bool); enabled {
		t.Errorf("the daemon runs its embedded NATS; the manifests use the NATS StatefulSet")
	}
	for _, u := range confStrings(get(cfg, "nats", "urls")) {
		if !strings.HasPrefix(u, "tls://") {
			t.Errorf("daemon nats.urls %q is not tls://", u)
		}
	}
	for _, k := range []string{"password", "token"} {
		if str(cfg, "nats", k) != "" {
			t.Errorf("daemon nats.%s is inline; use nats.%sFile", k, k)
		}
	}
	user := str(cfg, "nats", "user")
	u := confUser(m, user)
	if u == nil {
		t.Fatalf("the daemon's NATS user %q is not a user of nats.conf", user)
	}
	pf := str(cfg, "nats", "passwordFile")
	if pf == "" {
		t.Fatal("daemon: no nats.passwordFile")
	}
	src, err := resolveFile(pf, list(w.container["volumeMounts"]), w.volume)
	if err != nil {
		t.Fatalf("daemon nats.passwordFile %q: %v", pf, err)
	}
	pw, err := b.secretValue(w.ns, src.Name, src.Key)
	if err != nil {
		t.Fatalf("daemon nats.passwordFile: %v", err)
	}
	if pw != str(u, "password") {
		t.Errorf("daemon nats.passwordFile (%s/%s) does not hold the password nats.conf gives user %s", src.Name, src.Key, user)
	}
	ca := str(cfg, "nats", "caFile")
	if ca == "" {
		t.Fatal("daemon: no nats.caFile")
	}
	src, err = resolveFile(ca, list(w.container["volumeMounts"]), w.volume)
	if err != nil {
		t.Fatalf("daemon nats.caFile %q: %v", ca, err)
	}
	tlsSecret, _ := natsTLSSecret(t, n, m)
	if src.Kind != "Secret" || src.Name != tlsSecret || src.Key != "ca.crt" {
		t.Errorf("daemon nats.caFile is %s %s key %s, want Secret %s key ca.crt (the CA of the NATS servers' certificate)", src.Kind, src.Name, src.Key, tlsSecret)
	}
}

// natsTLSSecret is the Secret whose files the NATS servers' tls blocks use
// (client port and routes must use the same one).
func natsTLSSecret(t testing.TB, n *natsSetup, m map[string]any) (string, bool) {
	t.Helper()
	var secret string
	for _, block := range [][]string{{"tls"}, {"cluster", "tls"}} {
		tl, _ := get(m, block...).(map[string]any)
		if tl == nil {
			t.Errorf("nats.conf has no %s block", strings.Join(block, "."))
			continue
		}
		for _, f := range []string{"cert_file", "key_file", "ca_file"} {
			src, err := resolveFile(str(tl, f), list(n.w.container["volumeMounts"]), n.w.volume)
			if err != nil {
				t.Errorf("nats.conf %s.%s: %v", strings.Join(block, "."), f, err)
				continue
			}
			if src.Kind != "Secret" {
				t.Errorf("nats.conf %s.%s comes from a %s", strings.Join(block, "."), f, src.Kind)
			}
			if secret != "" && src.Name != secret {
				t.Errorf("nats.conf %s.%s comes from Secret %s, the rest from %s", strings.Join(block, "."), f, src.Name, secret)
			}
			secret = src.Name
		}
		// Routes verify peers anyway; on the client port verify would
		// demand client certificates the edges do not present.
		if v, _ := tl["verify"].(bool); v && block[0] == "tls" {
			t.Errorf("nats.conf tls.verify demands client certificates the edges do not present")
		}
	}
	return secret, secret != ""
}

// TestNATSCertificateCoversEveryName: the NATS certificate (cert-manager)
// holds every name a client or a route peer checks it against, and both key
// usages (route peers are each other's clients). A missing name shows only
// in a real cluster, as TLS errors.
func TestNATSCertificateCoversEveryName(t *testing.T) {
	b := loadBase(t)
	n := loadNATS(t, b)
	m := n.parsedConf(t)
	secret, ok := natsTLSSecret(t, n, m)
	if !ok {
		t.FailNow()
	}
	var cert obj
	for _, c := range b.find("Certificate", n.w.ns, "") {
		if str(c, "spec", "secretName") == secret {
			cert = c
		}
	}
	if cert == nil {
		t.Fatalf("no cert-manager Certificate of the base issues Secret %s/%s", n.w.ns, secret)
	}
	usages := map[string]bool{}
	for _, u := range list(get(cert, "spec", "usages")) {
		usages[fmt.Sprint(u)] = true
	}
	for _, u := range []string{"server auth", "client auth"} {
		if !usages[u] {
			t.Errorf("%s: usages lack %q", ref(cert), u)
		}
	}
	issuer := str(cert, "spec", "issuerRef", "name")
	ik := str(cert, "spec", "issuerRef", "kind")
	if ik == "" {
		ik = "Issuer"
	}
	ins := n.w.ns
	if ik == "ClusterIssuer" {
		ins = ""
	}
	if len(b.find(ik, ins, issuer)) != 1 {
		t.Errorf("%s: issuer %s %s is not in the base", ref(cert), ik, issuer)
	}
	var names []string
	for _, d := range list(get(cert, "spec", "dnsNames")) {
		names = append(names, fmt.Sprint(d))
	}
	covered := func(host string) bool {
		for _, d := range names {
			if d == host {
				return true
			}
			if strings.HasPrefix(d, "*.") {
				if i := strings.Index(host, "."); i > 0 && host[i+1:] == d[2:] {
					return true
				}
			}
		}
		return false
	}
	hosts := map[string]string{}
	for i := 0; i < n.replicas; i++ {
		_, env, err := n.podEnv(i)
		if err != nil {
			t.Fatal(err)
		}
		pm, err := parseConf(n.conf, env)
		if err != nil {
			t.Fatal(err)
		}
		pm = lower(pm).(map[string]any)
		for _, r := range confStrings(get(pm, "cluster", "routes")) {
			if u, err := url.Parse(r); err == nil {
				hosts[u.Hostname()] = "route of " + n.podName(i)
			}
		}
		if adv := str(pm, "cluster", "advertise"); adv != "" {
			if h, _, err := net.SplitHostPort(adv); err == nil {
				hosts[h] = "cluster advertise of " + n.podName(i)
			}
		}
	}
	for _, u := range confStrings(get(daemonConfig(t, b), "nats", "urls")) {
		if pu, err := url.Parse(u); err == nil {
			hosts[pu.Hostname()] = "the daemon's nats.urls"
		}
	}
	for _, mw := range middlewares(b) {
		for _, u := range confStrings(get(pluginConf(mw), "nats", "urls")) {
			if pu, err := url.Parse(u); err == nil {
				hosts[pu.Hostname()] = ref(mw) + " nats.urls"
			}
		}
	}
	for h, why := range hosts {
		if !covered(h) {
			t.Errorf("%s: dnsNames %v do not cover %s (%s)", ref(cert), names, h, why)
		}
	}
}

// TestEveryReferencedSecretExists: every Secret and ConfigMap a pod of the
// base mounts or reads into its environment is in the base (or issued by one
// of its cert-manager Certificates); a missing one leaves the pod waiting in
// ContainerCreating. The Traefik pods' sources live in Traefik's namespace;
// only an optional one may be left to the operator.
func TestEveryReferencedSecretExists(t *testing.T) {
	b := loadBase(t)
	issued := b.certSecrets()
	exists := func(ns string, s fileSource) bool {
		if s.Kind == "Secret" && issued[ns+"/"+s.Name] {
			return true
		}
		return len(b.find(s.Kind, ns, s.Name)) == 1
	}
	check := func(where, ns string, volumes []any, envs []any) {
		for _, v := range volumes {
			vo, _ := v.(obj)
			var srcs []fileSource
			if s := get(vo, "secret"); s != nil {
				opt, _ := get(s, "optional").(bool)
				srcs = append(srcs, fileSource{Kind: "Secret", Name: str(s, "secretName"), Optional: opt})
			}
			if s := get(vo, "configMap"); s != nil {
				opt, _ := get(s, "optional").(bool)
				srcs = append(srcs, fileSource{Kind: "ConfigMap", Name: str(s, "name"), Optional: opt})
			}
			for _, p := range list(get(vo, "projected", "sources")) {
				for k, kind := range map[string]string{"secret": "Secret", "configMap": "ConfigMap"} {
					if s := get(p, k); s != nil {
						opt, _ := get(s, "optional").(bool)
						srcs = append(srcs, fileSource{Kind: kind, Name: str(s, "name"), Optional: opt})
					}
				}
			}
			for _, s := range srcs {
				if !s.Optional && !exists(ns, s) {
					t.Errorf("%s: volume %s needs %s %s/%s, which the base neither holds nor issues", where, str(vo, "name"), s.Kind, ns, s.Name)
				}
			}
		}
		for _, e := range envs {
			for k, kind := range map[string]string{"secretKeyRef": "Secret", "configMapKeyRef": "ConfigMap"} {
				if r := get(e, "valueFrom", k); r != nil {
					var err error
					if kind == "Secret" {
						_, err = b.secretValue(ns, str(r, "name"), str(r, "key"))
					} else {
						_, err = b.configMapValue(ns, str(r, "name"), str(r, "key"))
					}
					if err != nil {
						t.Errorf("%s: env %s: %v", where, str(e, "name"), err)
					}
				}
			}
		}
	}
	for _, k := range []string{"Deployment", "StatefulSet", "DaemonSet"} {
		for _, o := range b.find(k, "", "") {
			pod := get(o, "spec", "template", "spec")
			var envs []any
			for _, c := range list(get(pod, "containers")) {
				envs = append(envs, list(get(c, "env"))...)
			}
			check(ref(o), namespace(o), list(get(pod, "volumes")), envs)
		}
	}
	check("traefik-values.yaml", traefikNamespace, list(get(b.traefik, "deployment", "additionalVolumes")), nil)
}
