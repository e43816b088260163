// Package deploy tests the Kubernetes manifests in deploy/kubernetes: the
// NATS configuration they hold runs here as a real 3-node cluster (only the
// addresses, file paths and pod-specific values are made local), and the
// objects are checked for what a cluster would do with them (namespaces,
// NetworkPolicy, mounts, secrets).
//
// EDGEPASS_DEPLOY_DIR points the tests at another copy of the manifests
// (e.g. an older revision, to see the tests fail on it).
package deploy

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/conf"
	"gopkg.in/yaml.v3"

	"github.com/edgepass/edgepass/integration/harness"
)

// traefikNamespace is where deploy/README.md installs the Traefik Helm
// release (and so where its pods run and its Secrets must live).
const traefikNamespace = "traefik"

// traefikPodLabels are the labels the Traefik Helm chart puts on its pods
// (release "traefik").
var traefikPodLabels = map[string]string{
	"app.kubernetes.io/name":     "traefik",
	"app.kubernetes.io/instance": "traefik-traefik",
}

// obj is one Kubernetes object (or any YAML mapping) as decoded by yaml.v3.
type obj = map[string]any

// base is the kustomization's objects plus the Traefik Helm values.
type base struct {
	dir     string
	objects []obj
	files   map[string][]obj // resource file -> its objects
	kust    obj
	traefik obj // traefik-values.yaml
}

func deployDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("EDGEPASS_DEPLOY_DIR"); d != "" {
		return d
	}
	repo, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(repo, "deploy", "kubernetes")
}

func loadBase(t testing.TB) *base {
	t.Helper()
	b, err := readBase(deployDir(t))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readBase(dir string) (*base, error) {
	b := &base{dir: dir, files: map[string][]obj{}}
	var err error
	if b.kust, err = readOneYAML(dir, "kustomization.yaml"); err != nil {
		return nil, err
	}
	for _, r := range list(b.kust["resources"]) {
		name, _ := r.(string)
		docs, err := readYAML(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		b.files[name] = docs
		b.objects = append(b.objects, docs...)
	}
	if b.traefik, err = readOneYAML(dir, "traefik-values.yaml"); err != nil {
		return nil, err
	}
	return b, nil
}

// readOneYAML reads dir/name, which must hold one YAML document.
func readOneYAML(dir, name string) (obj, error) {
	docs, err := readYAML(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	if len(docs) != 1 {
		return nil, fmt.Errorf("%s: want one document, got %d", name, len(docs))
	}
	return docs[0], nil
}

func readYAML(file string) ([]obj, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []obj
	for {
		var o obj
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if o != nil {
			out = append(out, o)
		}
	}
}

// get walks a path of map keys through nested mappings; nil when absent.
func get(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(obj)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func str(v any, keys ...string) string {
	s, _ := get(v, keys...).(string)
	return s
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

// podContainer is the first container of a workload's pod template.
func podContainer(workload obj) obj {
	c, _ := list(get(workload, "spec", "template", "spec", "containers"))[0].(obj)
	return c
}

// podVolume returns the lookup resolveFile takes: the volume of the
// workload's pod template with that name (nil if none).
func podVolume(workload obj) func(name string) obj {
	return func(name string) obj {
		for _, v := range list(get(workload, "spec", "template", "spec", "volumes")) {
			if vo, ok := v.(obj); ok && str(vo, "name") == name {
				return vo
			}
		}
		return nil
	}
}

func kind(o obj) string      { return str(o, "apiVersion") + "/" + str(o, "kind") }
func name(o obj) string      { return str(o, "metadata", "name") }
func namespace(o obj) string { return str(o, "metadata", "namespace") }
func ref(o obj) string {
	return fmt.Sprintf("%s %s/%s", str(o, "kind"), namespace(o), name(o))
}

// find returns the objects of a kind (e.g. "Secret"), optionally filtered
// by namespace ("" = any) and name ("" = any).
func (b *base) find(k, ns, n string) []obj {
	var out []obj
	for _, o := range b.objects {
		if str(o, "kind") == k && (ns == "" || namespace(o) == ns) && (n == "" || name(o) == n) {
			out = append(out, o)
		}
	}
	return out
}

func (b *base) one(t testing.TB, k, ns, n string) obj {
	t.Helper()
	l := b.find(k, ns, n)
	if len(l) != 1 {
		t.Fatalf("want exactly one %s %s/%s in the base, found %d", k, ns, n, len(l))
	}
	return l[0]
}

// secretValue reads a key of a Secret of the base (stringData or data).
func (b *base) secretValue(ns, secret, key string) (string, error) {
	l := b.find("Secret", ns, secret)
	if len(l) != 1 {
		return "", fmt.Errorf("Secret %s/%s: found %d in the base", ns, secret, len(l))
	}
	if v, ok := get(l[0], "stringData", key).(string); ok {
		return v, nil
	}
	if v, ok := get(l[0], "data", key).(string); ok {
		raw, err := base64.StdEncoding.DecodeString(v)
		return string(raw), err
	}
	return "", fmt.Errorf("Secret %s/%s has no key %q", ns, secret, key)
}

// configMapValue reads a key of a ConfigMap of the base.
func (b *base) configMapValue(ns, cm, key string) (string, error) {
	l := b.find("ConfigMap", ns, cm)
	if len(l) != 1 {
		return "", fmt.Errorf("ConfigMap %s/%s: found %d in the base", ns, cm, len(l))
	}
	v, ok := get(l[0], "data", key).(string)
	if !ok {
		return "", fmt.Errorf("ConfigMap %s/%s has no key %q", ns, cm, key)
	}
	return v, nil
}

// certSecrets are the Secrets cert-manager Certificates of the base create,
// with the keys such a Secret holds.
func (b *base) certSecrets() map[string]bool {
	out := map[string]bool{}
	for _, c := range b.find("Certificate", "", "") {
		out[namespace(c)+"/"+str(c, "spec", "secretName")] = true
	}
	return out
}

// workload is a pod template of the base (a Deployment or StatefulSet).
type workload struct {
	o         obj
	ns        string
	pod       obj // spec.template
	container obj // the first container
}

func (b *base) workload(t testing.TB, k, ns, n string) *workload {
	t.Helper()
	o := b.one(t, k, ns, n)
	pod, _ := get(o, "spec", "template").(obj)
	cs := list(get(pod, "spec", "containers"))
	if len(cs) == 0 {
		t.Fatalf("%s has no containers", ref(o))
	}
	c, _ := cs[0].(obj)
	return &workload{o: o, ns: ns, pod: pod, container: c}
}

func (w *workload) labels() map[string]string { return stringMap(get(w.pod, "metadata", "labels")) }

func stringMap(v any) map[string]string {
	out := map[string]string{}
	if m, ok := v.(obj); ok {
		for k, x := range m {
			out[k] = fmt.Sprint(x)
		}
	}
	return out
}

// volume returns the pod volume named n (nil if none).
func (w *workload) volume(n string) obj {
	for _, v := range list(get(w.pod, "spec", "volumes")) {
		if vo, ok := v.(obj); ok && str(vo, "name") == n {
			return vo
		}
	}
	return nil
}

// fileSource says where a file in a container comes from: a key of a Secret
// or ConfigMap (in the pod's namespace).
type fileSource struct {
	Kind, Name, Key string
	Optional        bool
}

// resolveFile finds which Secret/ConfigMap key a file path inside a container
// is, given the container's volumeMounts and the pod's volumes (lookup by
// volume name).
func resolveFile(file string, mounts []any, volume func(string) obj) (fileSource, error) {
	var best obj
	for _, m := range mounts {
		mo, _ := m.(obj)
		mp := strings.TrimSuffix(str(mo, "mountPath"), "/")
		under := strings.HasPrefix(file, mp+"/") || file == mp && str(mo, "subPath") != ""
		if mp != "" && under && (best == nil || len(mp) > len(str(best, "mountPath"))) {
			best = mo
		}
	}
	if best == nil {
		return fileSource{}, fmt.Errorf("no volumeMount holds %s", file)
	}
	mp := strings.TrimSuffix(str(best, "mountPath"), "/")
	rel := strings.TrimPrefix(file, mp+"/")
	if sp := str(best, "subPath"); sp != "" {
		if file != mp {
			return fileSource{}, fmt.Errorf("%s: mount %s uses subPath %s; not resolved", file, mp, sp)
		}
		rel = sp
	}
	vol := volume(str(best, "name"))
	if vol == nil {
		return fileSource{}, fmt.Errorf("%s: mount %s names volume %q, which the pod does not define", file, mp, str(best, "name"))
	}
	var sources []obj
	switch {
	case get(vol, "secret") != nil:
		s, _ := get(vol, "secret").(obj)
		sources = append(sources, obj{"secret": obj{"name": str(s, "secretName"), "items": s["items"], "optional": s["optional"]}})
	case get(vol, "configMap") != nil:
		sources = append(sources, obj{"configMap": get(vol, "configMap")})
	case get(vol, "projected") != nil:
		for _, s := range list(get(vol, "projected", "sources")) {
			if so, ok := s.(obj); ok {
				sources = append(sources, so)
			}
		}
	default:
		return fileSource{}, fmt.Errorf("%s: volume %q is neither a Secret, a ConfigMap nor a projection of them", file, str(vol, "name"))
	}
	for _, s := range sources {
		for _, k := range []string{"secret", "configMap"} {
			src, ok := s[k].(obj)
			if !ok {
				continue
			}
			fs := fileSource{Kind: map[string]string{"secret": "Secret", "configMap": "ConfigMap"}[k], Name: str(src, "name")}
			fs.Optional, _ = src["optional"].(bool)
			items := list(src["items"])
			if len(items) == 0 {
				// Every key becomes a file of its own name.
				if !strings.Contains(rel, "/") {
					fs.Key = rel
					return fs, nil
				}
				continue
			}
			for _, it := range items {
				item, _ := it.(obj)
				if path.Clean(str(item, "path")) == rel {
					fs.Key = str(item, "key")
					return fs, nil
				}
			}
		}
	}
	return fileSource{}, fmt.Errorf("%s: volume %q projects no file %s", file, str(vol, "name"), rel)
}

// natsSetup is the NATS StatefulSet of the base and its configuration.
type natsSetup struct {
	b        *base
	w        *workload
	sts      obj
	replicas int
	conf     string // nats.conf as the ConfigMap holds it
	confPath string // where the pod reads it
}

func loadNATS(t testing.TB, b *base) *natsSetup {
	t.Helper()
	w := b.workload(t, "StatefulSet", "edgepass", "nats")
	n := &natsSetup{b: b, w: w, sts: w.o, replicas: 1}
	if r, ok := get(w.o, "spec", "replicas").(int); ok {
		n.replicas = r
	}
	args := list(w.container["args"])
	for i, a := range args {
		if (a == "-c" || a == "--config") && i+1 < len(args) {
			n.confPath, _ = args[i+1].(string)
		}
	}
	if n.confPath == "" {
		t.Fatalf("%s: no -c <config> in the container's args %v", ref(w.o), args)
	}
	src, err := resolveFile(n.confPath, list(w.container["volumeMounts"]), w.volume)
	if err != nil {
		t.Fatalf("%s: %v", ref(w.o), err)
	}
	if src.Kind != "ConfigMap" {
		t.Fatalf("%s: %s comes from a %s, want a ConfigMap of the base", ref(w.o), n.confPath, src.Kind)
	}
	if n.conf, err = b.configMapValue(w.ns, src.Name, src.Key); err != nil {
		t.Fatal(err)
	}
	return n
}

func (n *natsSetup) podName(i int) string { return fmt.Sprintf("%s-%d", name(n.sts), i) }

// podEnv is the container's environment in pod i, as the kubelet builds it:
// fieldRefs, Secret and ConfigMap keys of the base, $(VAR) expansion.
func (n *natsSetup) podEnv(i int) ([]string, map[string]string, error) {
	var order []string
	vals := map[string]string{}
	for _, e := range list(n.w.container["env"]) {
		eo, _ := e.(obj)
		k := str(eo, "name")
		var v string
		switch {
		case get(eo, "valueFrom", "fieldRef") != nil:
			switch fp := str(eo, "valueFrom", "fieldRef", "fieldPath"); fp {
			case "metadata.name":
				v = n.podName(i)
			case "metadata.namespace":
				v = n.w.ns
			default:
				return nil, nil, fmt.Errorf("env %s: fieldRef %s not simulated", k, fp)
			}
		case get(eo, "valueFrom", "secretKeyRef") != nil:
			r, _ := get(eo, "valueFrom", "secretKeyRef").(obj)
			var err error
			if v, err = n.b.secretValue(n.w.ns, str(r, "name"), str(r, "key")); err != nil {
				return nil, nil, fmt.Errorf("env %s: %w", k, err)
			}
		case get(eo, "valueFrom", "configMapKeyRef") != nil:
			r, _ := get(eo, "valueFrom", "configMapKeyRef").(obj)
			var err error
			if v, err = n.b.configMapValue(n.w.ns, str(r, "name"), str(r, "key")); err != nil {
				return nil, nil, fmt.Errorf("env %s: %w", k, err)
			}
		default:
			v = kubeExpand(str(eo, "value"), vals)
		}
		if _, dup := vals[k]; !dup {
			order = append(order, k)
		}
		vals[k] = v
	}
	return order, vals, nil
}

var kubeVarRef = regexp.MustCompile(`\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)`)

// kubeExpand expands $(VAR) references to earlier variables as the kubelet
// does ($$ escapes; unknown references stay as written).
func kubeExpand(s string, vals map[string]string) string {
	return kubeVarRef.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		if v, ok := vals[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

var confVarRef = regexp.MustCompile(`\$([A-Za-z_][A-Za-z0-9_]*)`)

// parseConf parses a nats.conf with the given environment, the way
// nats-server does; variables the environment has are substituted as quoted
// strings first, so parsing needs no process environment.
func parseConf(text string, env map[string]string) (map[string]any, error) {
	text = confVarRef.ReplaceAllStringFunc(text, func(m string) string {
		v, ok := env[m[1:]]
		if !ok {
			return m
		}
		return fmt.Sprintf("%q", v)
	})
	return conf.Parse(text)
}

// lower returns m with its keys lower-cased, recursively (nats-server
// matches configuration keys case-insensitively).
func lower(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			out[strings.ToLower(k)] = lower(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = lower(e)
		}
		return out
	}
	return v
}

// strings of a conf value that may be one string or a list of them.
func confStrings(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, fmt.Sprint(e))
		}
		return out
	}
	return nil
}

// parsedConf is pod 0's nats.conf, parsed with its environment.
func (n *natsSetup) parsedConf(t testing.TB) map[string]any {
	t.Helper()
	_, env, err := n.podEnv(0)
	if err != nil {
		t.Fatal(err)
	}
	m, err := parseConf(n.conf, env)
	if err != nil {
		t.Fatalf("nats.conf of %s does not parse: %v", ref(n.sts), err)
	}
	return lower(m).(map[string]any)
}
