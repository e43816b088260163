package deploy

// The Kubernetes base deploy/kubernetes, built the way `kubectl apply -k`
// builds it (kustomize's krusty, in process), then held to the same rules as
// the Helm chart's objects.

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"
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
// selectors, named ports, mounts and Service targets hold together; and
// kustomize kept every object of the listed files.
func TestKustomizeBaseDecodesStrictly(t *testing.T) {
	objs, errs := kustomizeBase(t)
	for _, e := range append(errs, validateCustom(t, objs)...) {
		t.Error(e)
	}
	for _, e := range checkWorkloads(objs) {
		t.Error(e)
	}
	for _, o := range objs {
		if o.NS == "" && !clusterScoped[o.GVK.Kind] {
			t.Errorf("%s: no namespace; it would land in whatever namespace kubectl points at", o)
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
	c, _ := list(get(d.Map, "spec", "template", "spec", "containers"))[0].(obj)
	var file string
	for _, a := range list(c["args"]) {
		if s, _ := a.(string); strings.HasPrefix(s, "--configFile=") {
			file = strings.TrimPrefix(s, "--configFile=")
		}
	}
	volume := func(n string) obj {
		for _, v := range list(get(d.Map, "spec", "template", "spec", "volumes")) {
			if str(v, "name") == n {
				vo, _ := v.(obj)
				return vo
			}
		}
		return nil
	}
	src, err := resolveFile(file, list(c["volumeMounts"]), volume)
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
