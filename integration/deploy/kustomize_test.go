package deploy

// The Kubernetes base deploy/kubernetes, built the way `kubectl apply -k`
// builds it (kustomize's krusty, in process), then held to the same rules as
// the Helm chart's objects.

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

var (
	kustOnce sync.Once
	kustObjs []*kubeObject
	kustErr  error
	kustDec  []error
)

// kustomizeBase is `kustomize build deploy/kubernetes` (EDGEPASS_DEPLOY_DIR
// for another copy), decoded; built-in kinds are decoded strictly once.
func kustomizeBase(t testing.TB) ([]*kubeObject, []error) {
	t.Helper()
	kustOnce.Do(func() {
		k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
		rm, err := k.Run(filesys.MakeFsOnDisk(), deployDir(t))
		if err != nil {
			kustErr = fmt.Errorf("kustomize build %s: %w", deployDir(t), err)
			return
		}
		out, err := rm.AsYaml()
		if err != nil {
			kustErr = err
			return
		}
		if kustObjs, kustErr = splitManifests("kustomize build deploy/kubernetes", out); kustErr == nil {
			kustDec = decodeBuiltins(kustObjs)
		}
	})
	if kustErr != nil {
		t.Fatal(kustErr)
	}
	return kustObjs, kustDec
}

// TestKustomizeBaseDecodesStrictly: the base builds with kustomize; every
// object decodes into its Kubernetes API type with no unknown or duplicate
// field, or fits Traefik v3.6.12's CRD schema or cert-manager's v1 API;
// namespaced objects name their namespace (the base sets none for them);
// selectors, named ports, mounts and Service targets hold together; the
// pods meet the "restricted" Pod Security Standard; the Middlewares use
// only the plugin's settings, no inline secret; and
// kustomize kept every object of the listed files.
func TestKustomizeBaseDecodesStrictly(t *testing.T) {
	objs, errs := kustomizeBase(t)
	for _, e := range append(errs, validateCustom(t, objs)...) {
		t.Error(e)
	}
	for _, e := range append(checkWorkloads(objs), checkRestricted(objs)...) {
		t.Error(e)
	}
	for _, o := range objs {
		if o.NS == "" && !clusterScoped[o.GVK.Kind] {
			t.Errorf("%s: no namespace; it would land in whatever namespace kubectl points at", o)
		}
	}
	// The Middlewares: known plugin settings, no inline secret, NATS over
	// TLS from files. trustAnchors is a placeholder until the daemon's first
	// start (deploy/README.md, step 6).
	for _, m := range objectsOfKind(objs, "Middleware") {
		conf, _ := get(m.Map, "spec", "plugin", "edgepass").(obj)
		if conf == nil {
			continue
		}
		placeholder := str(conf, "trustAnchors") == "change-me-trust-anchor"
		for _, e := range checkPluginSettings(m.String(), conf) {
			if placeholder && strings.Contains(e, ": trustAnchors: ") {
				continue
			}
			t.Error(e)
		}
	}
	b := loadBase(t)
	if len(objs) != len(b.objects) {
		t.Errorf("kustomize built %d objects from files holding %d", len(objs), len(b.objects))
	}
}

// TestKustomizeDaemonAgrees: the base's daemon configuration loads with the
// daemon's own loader; its listen addresses are the container ports its
// Services target; the probes hit endpoints the listener on that port
// serves (/readyz only on admin); it runs as a non-root user with a
// read-only root filesystem, its dataDir on an emptyDir.
func TestKustomizeDaemonAgrees(t *testing.T) {
	objs, _ := kustomizeBase(t)
	d := findObject(t, objs, "Deployment", "edgepass", "edgepass")
	_, pod, _ := podSpecOf(d)
	if pod == nil {
		t.Fatalf("%s did not decode", d)
	}
	c := pod.Containers[0]
	text := daemonConfigTextOf(t, objs, d)
	ca, err := newCA("edgepass kustomize test CA")
	if err != nil {
		t.Fatal(err)
	}
	loaded, dataDir, err := loadDaemonConfig(t, ca, text)
	if err != nil {
		t.Fatalf("the daemon refuses the base's configuration: %v\n%s", err, text)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	serves := map[int32][]string{
		portOf(t, loaded.Listen):       {"/healthz"},
		portOf(t, loaded.Admin.Listen): {"/healthz", "/readyz"},
	}
	if ports["http"] != portOf(t, loaded.Listen) || ports["admin"] != portOf(t, loaded.Admin.Listen) {
		t.Errorf("container ports %v, daemon listens on %s and %s", ports, loaded.Listen, loaded.Admin.Listen)
	}
	for what, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("no %s HTTP probe", what)
			continue
		}
		port := p.HTTPGet.Port.IntVal
		if p.HTTPGet.Port.StrVal != "" {
			port = ports[p.HTTPGet.Port.StrVal]
		}
		ok := false
		for _, path := range serves[port] {
			ok = ok || path == p.HTTPGet.Path
		}
		if !ok {
			t.Errorf("%s probe GET %s on port %d: the daemon does not serve it there (%v)", what, p.HTTPGet.Path, port, serves)
		}
	}
	if p := c.ReadinessProbe; p != nil && p.HTTPGet != nil && p.HTTPGet.Path != "/readyz" {
		t.Errorf("readiness probe %s: /readyz is what says the replica can issue and revoke", p.HTTPGet.Path)
	}
	for _, svc := range objectsOfKind(objs, "Service") {
		s, _ := svc.Typed.(*corev1.Service)
		if s == nil || s.Spec.Selector["app.kubernetes.io/name"] != "edgepass" {
			continue
		}
		for _, sp := range s.Spec.Ports {
			target := sp.TargetPort.IntVal
			if sp.TargetPort.StrVal != "" {
				target = ports[sp.TargetPort.StrVal]
			}
			if target != ports["http"] && target != ports["admin"] {
				t.Errorf("%s port %s targets %d, where the daemon does not listen", svc, sp.Name, target)
			}
		}
	}
	psc, csc := pod.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("%s: not forced to a non-root user", d)
	}
	if csc == nil || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		t.Errorf("%s: root filesystem writable or privilege escalation allowed", d)
	}
	onEmptyDir := false
	for _, m := range c.VolumeMounts {
		for _, v := range pod.Volumes {
			onEmptyDir = onEmptyDir || m.MountPath == dataDir && v.Name == m.Name && v.EmptyDir != nil
		}
	}
	if !onEmptyDir {
		t.Errorf("%s: dataDir %s is not on an emptyDir", d, dataDir)
	}
}

// daemonConfigTextOf is the daemon's configuration file as the pod of
// workload d reads it (--configFile, through its mounts, from a ConfigMap
// of objs).
func daemonConfigTextOf(t testing.TB, objs []*kubeObject, d *kubeObject) string {
	t.Helper()
	c := podContainer(d.Map)
	var file string
	for _, a := range list(c["args"]) {
		if s, _ := a.(string); strings.HasPrefix(s, "--configFile=") {
			file = strings.TrimPrefix(s, "--configFile=")
		}
	}
	src, err := resolveFile(file, list(c["volumeMounts"]), podVolume(d.Map))
	if err != nil {
		t.Fatalf("%s: --configFile=%s: %v", d, file, err)
	}
	cm := findObject(t, objs, "ConfigMap", d.NS, src.Name)
	text, ok := get(cm.Map, "data", src.Key).(string)
	if !ok {
		t.Fatalf("%s has no key %s", cm, src.Key)
	}
	var probe obj
	if err := yaml.Unmarshal([]byte(text), &probe); err != nil {
		t.Fatalf("%s %s: %v", cm, src.Key, err)
	}
	return text
}

// TestNetworkPolicyFitsTheCharts: deploy/helm/README.md offers the base's
// NetworkPolicy for the Helm install too: it must admit the chart's daemon
// pods to NATS's client port and select the NATS chart's pods
// (EDGEPASS_NATS_CHART renders them; otherwise the label the chart's
// templates set is assumed).
func TestNetworkPolicyFitsTheCharts(t *testing.T) {
	objs, _ := kustomizeBase(t)
	np, _ := findObject(t, objs, "NetworkPolicy", "edgepass", "nats").Typed.(*networkingv1.NetworkPolicy)
	if np == nil {
		t.Fatal("NetworkPolicy edgepass/nats did not decode")
	}
	_, d := renderChart(t, "default").deployment(t)
	daemon := labels.Set(d.Spec.Template.Labels)
	admitted := false
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			if p.Port == nil || p.Port.IntVal != 4222 {
				continue
			}
			for _, from := range rule.From {
				if from.NamespaceSelector != nil || from.PodSelector == nil {
					continue
				}
				if s, err := metav1.LabelSelectorAsSelector(from.PodSelector); err == nil && s.Matches(daemon) {
					admitted = true
				}
			}
		}
	}
	if !admitted {
		t.Errorf("the NetworkPolicy does not admit the chart's daemon pods (%v) to 4222", daemon)
	}
	natsPods := labels.Set{"app.kubernetes.io/name": "nats", "app.kubernetes.io/instance": "nats", "app.kubernetes.io/component": "nats"}
	if dir := os.Getenv("EDGEPASS_NATS_CHART"); dir != "" {
		nobjs := natsChartObjects(t, dir)
		decodeBuiltins(nobjs)
		sts, _ := findObject(t, nobjs, "StatefulSet", "", "nats").Typed.(*appsv1.StatefulSet)
		if sts == nil {
			t.Fatal("the nats chart's StatefulSet did not decode")
		}
		natsPods = labels.Set(sts.Spec.Template.Labels)
	}
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil || !sel.Matches(natsPods) {
		t.Errorf("the NetworkPolicy's podSelector %v does not select the NATS chart's pods %v", sel, natsPods)
	}
}
