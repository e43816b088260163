package deploy

// Strict decoding of rendered Kubernetes objects (the Helm chart's and the
// kustomize base's): built-in kinds decode into the k8s.io/api types with
// unknown and duplicate fields refused (what `kubectl apply
// --validate=strict` and the API server's strict field validation do);
// Traefik's Middleware and IngressRoute are checked against the CRD schemas
// Traefik v3.6.12 ships; cert-manager's Issuer and Certificate against the
// subset of cert-manager.io/v1 written out below. Then what the API server
// would refuse, or what would leave pods pending, is checked across objects.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	kyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	sigsyaml "sigs.k8s.io/yaml"
)

// traefikVersion is the Traefik release whose CRDs the objects must fit.
const traefikVersion = "v3.6.12"

// kubeObject is one decoded object of a manifest stream.
type kubeObject struct {
	Source string // where it came from (template or file), for messages
	JSON   []byte
	Map    map[string]any // the generic form (for walks and CRD checks)
	GVK    schema.GroupVersionKind
	Name   string
	NS     string
	Typed  runtime.Object // the k8s.io/api object, nil for custom resources
}

func (o *kubeObject) String() string {
	if o.NS != "" {
		return fmt.Sprintf("%s %s/%s", o.GVK.Kind, o.NS, o.Name)
	}
	return fmt.Sprintf("%s %s", o.GVK.Kind, o.Name)
}

var kubeScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme, networkingv1.AddToScheme, rbacv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// regexpSource finds helm template's "# Source: <chart>/templates/<file>".
var regexpSource = regexp.MustCompile(`(?m)^# Source: (.+)$`)

// splitManifests splits a YAML stream into documents the way kubectl does
// (k8s.io/apimachinery's YAML reader), converts each to JSON with YAML 1.1
// semantics and duplicate keys refused (sigs.k8s.io/yaml, kubectl's
// converter), and skips empty documents. source names the stream.
func splitManifests(source string, data []byte) ([]*kubeObject, error) {
	r := kyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []*kubeObject
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", source, i, err)
		}
		src := source
		if m := regexpSource.FindSubmatch(doc); m != nil {
			src = string(m[1])
		}
		js, err := sigsyaml.YAMLToJSONStrict(doc)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(js, &m); err != nil {
			return nil, fmt.Errorf("%s: not a mapping: %w", src, err)
		}
		var tm metav1.TypeMeta
		_ = json.Unmarshal(js, &tm)
		gv, err := schema.ParseGroupVersion(tm.APIVersion)
		if err != nil || tm.Kind == "" {
			return nil, fmt.Errorf("%s: apiVersion %q / kind %q", src, tm.APIVersion, tm.Kind)
		}
		o := &kubeObject{Source: src, JSON: js, Map: m, GVK: gv.WithKind(tm.Kind)}
		o.Name, _ = get(m, "metadata", "name").(string)
		o.NS, _ = get(m, "metadata", "namespace").(string)
		out = append(out, o)
	}
}

// strictDecode decodes every object into its API type with unknown and
// duplicate fields refused, or checks it against its CRD schema; it returns
// one error per problem.
func strictDecode(t testing.TB, objs []*kubeObject) []error {
	t.Helper()
	return append(decodeBuiltins(objs), validateCustom(t, objs)...)
}

// decodeBuiltins checks names and decodes the built-in kinds strictly,
// setting Typed.
func decodeBuiltins(objs []*kubeObject) []error {
	var errs []error
	for _, o := range objs {
		if o.Name == "" {
			errs = append(errs, fmt.Errorf("%s: %s has no metadata.name", o.Source, o.GVK.Kind))
		} else if msgs := validation.IsDNS1123Subdomain(o.Name); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("%s: name %q: %s", o, o.Name, strings.Join(msgs, "; ")))
		}
		if o.NS != "" {
			if msgs := validation.IsDNS1123Label(o.NS); len(msgs) > 0 {
				errs = append(errs, fmt.Errorf("%s: namespace %q: %s", o, o.NS, strings.Join(msgs, "; ")))
			}
		}
		if !kubeScheme.Recognizes(o.GVK) || o.Typed != nil {
			continue
		}
		typed, err := kubeScheme.New(o.GVK)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %v", o, err))
			continue
		}
		strictErrs, err := sigsjson.UnmarshalStrict(o.JSON, typed, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s (%s): does not decode into %T: %v", o, o.Source, typed, err))
			continue
		}
		for _, e := range strictErrs {
			errs = append(errs, fmt.Errorf("%s (%s): %v", o, o.Source, e))
		}
		o.Typed = typed
	}
	return errs
}

// validateCustom checks the custom resources: Traefik's against its CRDs,
// cert-manager's against the types below; any other kind is an error.
func validateCustom(t testing.TB, objs []*kubeObject) []error {
	t.Helper()
	var errs []error
	for _, o := range objs {
		if kubeScheme.Recognizes(o.GVK) {
			continue
		}
		switch o.GVK.Group {
		case "traefik.io":
			errs = append(errs, traefikCRDs(t).validate(o)...)
		case "cert-manager.io":
			errs = append(errs, validateCertManager(o)...)
		default:
			errs = append(errs, fmt.Errorf("%s (%s): %s is neither a built-in kind, a Traefik CRD nor cert-manager's; nothing here can check it", o, o.Source, o.GVK))
		}
	}
	return errs
}

// ---------------------------------------------------------------------------
// Traefik's CRDs, from the Traefik module in the module cache.

type crdSet struct {
	err     error
	schemas map[schema.GroupVersionKind]map[string]any // openAPIV3Schema per served version
	files   []string
}

var (
	crdOnce sync.Once
	theCRDs *crdSet
)

// traefikModuleDir is the Traefik module's directory in the module cache
// (downloaded from the Go module proxy if needed, as build-traefik.sh does).
func traefikModuleDir() (string, error) {
	dir, err := os.MkdirTemp("", "edgepass-modcache-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command("go", "mod", "download", "-json", "github.com/traefik/traefik/v3@"+traefikVersion)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	_ = json.Unmarshal(out, &info)
	if err != nil || info.Dir == "" {
		return "", fmt.Errorf("go mod download github.com/traefik/traefik/v3@%s: %v %s %s", traefikVersion, err, info.Error, strings.TrimSpace(stderr.String()))
	}
	return info.Dir, nil
}

// traefikCRDs loads the Middleware and IngressRoute CRDs of Traefik's
// module (docs/content/reference/dynamic-configuration/traefik.io_*.yaml,
// the same definitions its Helm chart installs), from the module cache or
// the Go module proxy, as scripts/build-traefik.sh gets its source.
func traefikCRDs(t testing.TB) *crdSet {
	t.Helper()
	crdOnce.Do(func() {
		theCRDs = &crdSet{schemas: map[schema.GroupVersionKind]map[string]any{}}
		dir, err := traefikModuleDir()
		if err != nil {
			theCRDs.err = err
			return
		}
		for _, f := range []string{"traefik.io_middlewares.yaml", "traefik.io_ingressroutes.yaml"} {
			path := filepath.Join(dir, "docs", "content", "reference", "dynamic-configuration", f)
			data, err := os.ReadFile(path)
			if err != nil {
				theCRDs.err = err
				return
			}
			theCRDs.files = append(theCRDs.files, path)
			var crd struct {
				Spec struct {
					Group    string
					Names    struct{ Kind string }
					Versions []struct {
						Name   string
						Served bool
						Schema struct {
							OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
						}
					}
				}
			}
			if err := sigsyaml.Unmarshal(data, &crd); err != nil {
				theCRDs.err = fmt.Errorf("%s: %w", path, err)
				return
			}
			for _, v := range crd.Spec.Versions {
				if v.Served && v.Schema.OpenAPIV3Schema != nil {
					theCRDs.schemas[schema.GroupVersionKind{Group: crd.Spec.Group, Version: v.Name, Kind: crd.Spec.Names.Kind}] = v.Schema.OpenAPIV3Schema
				}
			}
		}
	})
	if theCRDs.err != nil {
		t.Fatalf("Traefik %s's CRD definitions are not available (module cache or Go module proxy; scripts/build-traefik.sh needs the same), so Traefik objects cannot be checked: %v", traefikVersion, theCRDs.err)
	}
	return theCRDs
}

func (c *crdSet) validate(o *kubeObject) []error {
	s, ok := c.schemas[o.GVK]
	if !ok {
		return []error{fmt.Errorf("%s (%s): Traefik %s serves no CRD for %s (known: %v)", o, o.Source, traefikVersion, o.GVK, c.kinds())}
	}
	var errs []error
	// metadata is "type: object" in the schema: decode it as the API server does.
	if md, ok := o.Map["metadata"]; ok {
		raw, _ := json.Marshal(md)
		var meta metav1.ObjectMeta
		strictErrs, err := sigsjson.UnmarshalStrict(raw, &meta, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: metadata: %v", o, err))
		}
		for _, e := range strictErrs {
			errs = append(errs, fmt.Errorf("%s: metadata: %v", o, e))
		}
	}
	for _, e := range checkSchema(o.Map, s, "") {
		errs = append(errs, fmt.Errorf("%s (%s): %s", o, o.Source, e))
	}
	return errs
}

func (c *crdSet) kinds() []string {
	var out []string
	for k := range c.schemas {
		out = append(out, k.String())
	}
	sort.Strings(out)
	return out
}

// checkSchema checks v against a structural OpenAPI v3 schema as the API
// server's validation and pruning would: types, properties (unknown fields
// are errors, as with strict field validation), required, enum, items,
// additionalProperties, x-kubernetes-preserve-unknown-fields,
// x-kubernetes-int-or-string, min/max items and values. CEL rules
// (x-kubernetes-validations) and patterns are not evaluated.
func checkSchema(v any, s map[string]any, path string) []string {
	at := path
	if at == "" {
		at = "(root)"
	}
	if v == nil {
		if b, _ := s["nullable"].(bool); b {
			return nil
		}
		return []string{at + ": null"}
	}
	if b, _ := s["x-kubernetes-int-or-string"].(bool); b {
		switch x := v.(type) {
		case string:
			return nil
		case float64:
			if x == float64(int64(x)) {
				return nil
			}
		}
		return []string{fmt.Sprintf("%s: %v is neither an integer nor a string", at, v)}
	}
	var errs []string
	if enum, ok := s["enum"].([]any); ok {
		found := false
		for _, e := range enum {
			if reflect.DeepEqual(e, v) {
				found = true
			}
		}
		if !found {
			errs = append(errs, fmt.Sprintf("%s: %v is not one of %v", at, v, enum))
		}
	}
	typ, _ := s["type"].(string)
	switch typ {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return append(errs, fmt.Sprintf("%s: want an object, got %T", at, v))
		}
		props, _ := s["properties"].(map[string]any)
		addl := s["additionalProperties"]
		preserve, _ := s["x-kubernetes-preserve-unknown-fields"].(bool)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			p := k
			if path != "" {
				p = path + "." + k
			}
			if ps, ok := props[k].(map[string]any); ok {
				errs = append(errs, checkSchema(m[k], ps, p)...)
				continue
			}
			if as, ok := addl.(map[string]any); ok {
				errs = append(errs, checkSchema(m[k], as, p)...)
				continue
			}
			if b, ok := addl.(bool); (ok && b) || preserve {
				continue
			}
			if props == nil && addl == nil {
				// "type: object" with no structure (metadata): anything.
				continue
			}
			errs = append(errs, fmt.Sprintf("%s: unknown field (the CRD defines %s)", p, strings.Join(slices.Sorted(maps.Keys(props)), ", ")))
		}
		for _, r := range list(s["required"]) {
			if _, ok := m[fmt.Sprint(r)]; !ok {
				errs = append(errs, fmt.Sprintf("%s: required field %q missing", at, r))
			}
		}
	case "array":
		l, ok := v.([]any)
		if !ok {
			return append(errs, fmt.Sprintf("%s: want a list, got %T", at, v))
		}
		if n, ok := s["minItems"].(float64); ok && float64(len(l)) < n {
			errs = append(errs, fmt.Sprintf("%s: %d items, at least %v", at, len(l), n))
		}
		if n, ok := s["maxItems"].(float64); ok && float64(len(l)) > n {
			errs = append(errs, fmt.Sprintf("%s: %d items, at most %v", at, len(l), n))
		}
		if is, ok := s["items"].(map[string]any); ok {
			for i, e := range l {
				errs = append(errs, checkSchema(e, is, fmt.Sprintf("%s[%d]", path, i))...)
			}
		}
	case "string":
		if _, ok := v.(string); !ok {
			errs = append(errs, fmt.Sprintf("%s: want a string, got %T (%v)", at, v, v))
		}
	case "integer", "number":
		f, ok := v.(float64)
		if !ok {
			return append(errs, fmt.Sprintf("%s: want a number, got %T (%v)", at, v, v))
		}
		if typ == "integer" && f != float64(int64(f)) {
			errs = append(errs, fmt.Sprintf("%s: %v is not an integer", at, v))
		}
		if n, ok := s["minimum"].(float64); ok && f < n {
			errs = append(errs, fmt.Sprintf("%s: %v below the minimum %v", at, v, n))
		}
		if n, ok := s["maximum"].(float64); ok && f > n {
			errs = append(errs, fmt.Sprintf("%s: %v above the maximum %v", at, v, n))
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			errs = append(errs, fmt.Sprintf("%s: want a boolean, got %T (%v)", at, v, v))
		}
	case "":
		// Untyped (anyOf without int-or-string, or free): accept.
	default:
		errs = append(errs, fmt.Sprintf("%s: schema type %q not understood by this check", at, typ))
	}
	return errs
}

// ---------------------------------------------------------------------------
// cert-manager.io/v1 Issuer and Certificate: no CRD of cert-manager is
// available offline, so its API (https://cert-manager.io/docs/reference/api-docs/)
// is written out here for the fields that matter: every top-level spec field
// is known (so a misspelling is caught), and the ones the base uses are typed.

type cmIssuerRef struct {
	Name  string `json:"name"`
	Kind  string `json:"kind,omitempty"`
	Group string `json:"group,omitempty"`
}

type cmPrivateKey struct {
	RotationPolicy string `json:"rotationPolicy,omitempty"`
	Encoding       string `json:"encoding,omitempty"`
	Algorithm      string `json:"algorithm,omitempty"`
	Size           int    `json:"size,omitempty"`
}

type cmCertificate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Subject                 json.RawMessage `json:"subject,omitempty"`
		LiteralSubject          string          `json:"literalSubject,omitempty"`
		CommonName              string          `json:"commonName,omitempty"`
		Duration                string          `json:"duration,omitempty"`
		RenewBefore             string          `json:"renewBefore,omitempty"`
		RenewBeforePercentage   *int            `json:"renewBeforePercentage,omitempty"`
		DNSNames                []string        `json:"dnsNames,omitempty"`
		IPAddresses             []string        `json:"ipAddresses,omitempty"`
		URIs                    []string        `json:"uris,omitempty"`
		OtherNames              json.RawMessage `json:"otherNames,omitempty"`
		EmailAddresses          []string        `json:"emailAddresses,omitempty"`
		SecretName              string          `json:"secretName"`
		SecretTemplate          json.RawMessage `json:"secretTemplate,omitempty"`
		Keystores               json.RawMessage `json:"keystores,omitempty"`
		IssuerRef               cmIssuerRef     `json:"issuerRef"`
		IsCA                    bool            `json:"isCA,omitempty"`
		Usages                  []string        `json:"usages,omitempty"`
		PrivateKey              *cmPrivateKey   `json:"privateKey,omitempty"`
		SignatureAlgorithm      string          `json:"signatureAlgorithm,omitempty"`
		EncodeUsagesInRequest   *bool           `json:"encodeUsagesInRequest,omitempty"`
		RevisionHistoryLimit    *int            `json:"revisionHistoryLimit,omitempty"`
		AdditionalOutputFormats json.RawMessage `json:"additionalOutputFormats,omitempty"`
		NameConstraints         json.RawMessage `json:"nameConstraints,omitempty"`
	} `json:"spec"`
}

type cmIssuer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ACME       json.RawMessage `json:"acme,omitempty"`
		Vault      json.RawMessage `json:"vault,omitempty"`
		Venafi     json.RawMessage `json:"venafi,omitempty"`
		SelfSigned *struct {
			CRLDistributionPoints []string `json:"crlDistributionPoints,omitempty"`
		} `json:"selfSigned,omitempty"`
		CA *struct {
			SecretName             string   `json:"secretName"`
			CRLDistributionPoints  []string `json:"crlDistributionPoints,omitempty"`
			OCSPServers            []string `json:"ocspServers,omitempty"`
			IssuingCertificateURLs []string `json:"issuingCertificateURLs,omitempty"`
		} `json:"ca,omitempty"`
	} `json:"spec"`
}

// cmKeyUsages are cert-manager's KeyUsage values.
var cmKeyUsages = map[string]bool{
	"signing": true, "digital signature": true, "content commitment": true, "key encipherment": true,
	"key agreement": true, "data encipherment": true, "cert sign": true, "crl sign": true,
	"encipher only": true, "decipher only": true, "any": true, "server auth": true, "client auth": true,
	"code signing": true, "email protection": true, "s/mime": true, "ipsec end system": true,
	"ipsec tunnel": true, "ipsec user": true, "timestamping": true, "ocsp signing": true,
	"microsoft sgc": true, "netscape sgc": true,
}

func validateCertManager(o *kubeObject) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s (%s): %s", o, o.Source, fmt.Sprintf(format, args...)))
	}
	if o.GVK.Version != "v1" {
		bad("cert-manager serves %s only as v1", o.GVK.Kind)
		return errs
	}
	decode := func(v any) bool {
		strictErrs, err := sigsjson.UnmarshalStrict(o.JSON, v, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
		if err != nil {
			bad("%v", err)
			return false
		}
		for _, e := range strictErrs {
			bad("%v", e)
		}
		return len(strictErrs) == 0
	}
	switch o.GVK.Kind {
	case "Certificate":
		var c cmCertificate
		if !decode(&c) {
			return errs
		}
		if c.Spec.SecretName == "" {
			bad("spec.secretName is required")
		}
		if c.Spec.IssuerRef.Name == "" {
			bad("spec.issuerRef.name is required")
		}
		if k := c.Spec.IssuerRef.Kind; k != "" && k != "Issuer" && k != "ClusterIssuer" {
			bad("spec.issuerRef.kind %q is not Issuer or ClusterIssuer", k)
		}
		for _, d := range []struct{ f, v string }{{"duration", c.Spec.Duration}, {"renewBefore", c.Spec.RenewBefore}} {
			if d.v != "" {
				if _, err := time.ParseDuration(d.v); err != nil {
					bad("spec.%s %q: %v", d.f, d.v, err)
				}
			}
		}
		for _, u := range c.Spec.Usages {
			if !cmKeyUsages[u] {
				bad("spec.usages: %q is not a cert-manager key usage", u)
			}
		}
		if pk := c.Spec.PrivateKey; pk != nil {
			if pk.Algorithm != "" && pk.Algorithm != "RSA" && pk.Algorithm != "ECDSA" && pk.Algorithm != "Ed25519" {
				bad("spec.privateKey.algorithm %q is not RSA, ECDSA or Ed25519", pk.Algorithm)
			}
			if pk.RotationPolicy != "" && pk.RotationPolicy != "Never" && pk.RotationPolicy != "Always" {
				bad("spec.privateKey.rotationPolicy %q is not Never or Always", pk.RotationPolicy)
			}
			if pk.Algorithm == "ECDSA" && pk.Size != 0 && pk.Size != 256 && pk.Size != 384 && pk.Size != 521 {
				bad("spec.privateKey.size %d is not an ECDSA size", pk.Size)
			}
		}
		if len(c.Spec.DNSNames) == 0 && c.Spec.CommonName == "" && len(c.Spec.IPAddresses) == 0 && len(c.Spec.URIs) == 0 && len(c.Spec.EmailAddresses) == 0 && c.Spec.LiteralSubject == "" {
			bad("no commonName, dnsNames, ipAddresses, uris or emailAddresses: cert-manager refuses it")
		}
	case "Issuer", "ClusterIssuer":
		var i cmIssuer
		if !decode(&i) {
			return errs
		}
		n := 0
		for _, set := range []bool{len(i.Spec.ACME) > 0, len(i.Spec.Vault) > 0, len(i.Spec.Venafi) > 0, i.Spec.SelfSigned != nil, i.Spec.CA != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			bad("spec must configure exactly one issuer type (acme, ca, selfSigned, vault, venafi); it has %d", n)
		}
		if i.Spec.CA != nil && i.Spec.CA.SecretName == "" {
			bad("spec.ca.secretName is required")
		}
	default:
		bad("kind %s of cert-manager.io is not checked here", o.GVK.Kind)
	}
	return errs
}

// ---------------------------------------------------------------------------
// Cross-object checks on decoded built-in objects.

// podSpecOf returns the pod template of a workload (nil for other kinds).
func podSpecOf(o *kubeObject) (*metav1.ObjectMeta, *corev1.PodSpec, *metav1.LabelSelector) {
	switch x := o.Typed.(type) {
	case *appsv1.Deployment:
		return &x.Spec.Template.ObjectMeta, &x.Spec.Template.Spec, x.Spec.Selector
	case *appsv1.StatefulSet:
		return &x.Spec.Template.ObjectMeta, &x.Spec.Template.Spec, x.Spec.Selector
	case *appsv1.DaemonSet:
		return &x.Spec.Template.ObjectMeta, &x.Spec.Template.Spec, x.Spec.Selector
	}
	return nil, nil, nil
}

// checkWorkloads finds what the API server refuses in workloads, Services
// and PodDisruptionBudgets, or what leaves them doing nothing: selectors
// that do not select the template, probes or Service targetPorts naming no
// container port, mounts of undefined volumes, Services and PDBs that select
// no pod.
func checkWorkloads(objs []*kubeObject) []error {
	var errs []error
	bad := func(o *kubeObject, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", o, fmt.Sprintf(format, args...)))
	}
	type pod struct {
		o      *kubeObject
		labels labels.Set
		spec   *corev1.PodSpec
	}
	var pods []pod
	for _, o := range objs {
		meta, spec, sel := podSpecOf(o)
		if spec == nil {
			continue
		}
		if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
			bad(o, "no spec.selector")
		} else if s, err := metav1.LabelSelectorAsSelector(sel); err != nil {
			bad(o, "spec.selector: %v", err)
		} else if !s.Matches(labels.Set(meta.Labels)) {
			bad(o, "spec.selector %v does not select its own template's labels %v (the API server refuses it)", s, meta.Labels)
		}
		pods = append(pods, pod{o: o, labels: labels.Set(meta.Labels), spec: spec})
		vols := map[string]bool{}
		if sts, ok := o.Typed.(*appsv1.StatefulSet); ok {
			for _, pvc := range sts.Spec.VolumeClaimTemplates {
				vols[pvc.Name] = true
			}
		}
		for _, v := range spec.Volumes {
			if vols[v.Name] {
				bad(o, "volume %q defined twice", v.Name)
			}
			vols[v.Name] = true
		}
		for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
			if c.Name == "" || c.Image == "" {
				bad(o, "a container without name or image")
			}
			ports := map[string]int32{}
			for _, p := range c.Ports {
				if p.Name != "" {
					if msgs := validation.IsValidPortName(p.Name); len(msgs) > 0 {
						bad(o, "container %s port name %q: %s", c.Name, p.Name, strings.Join(msgs, "; "))
					}
					ports[p.Name] = p.ContainerPort
				}
			}
			for _, m := range c.VolumeMounts {
				if !vols[m.Name] {
					bad(o, "container %s mounts volume %q, which the pod does not define", c.Name, m.Name)
				}
			}
			for what, pr := range map[string]*corev1.Probe{"livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe, "startupProbe": c.StartupProbe} {
				if pr == nil {
					continue
				}
				var port *intstr.IntOrString
				if pr.HTTPGet != nil {
					port = &pr.HTTPGet.Port
				} else if pr.TCPSocket != nil {
					port = &pr.TCPSocket.Port
				}
				if port != nil && port.Type == intstr.String {
					if _, ok := ports[port.StrVal]; !ok {
						bad(o, "container %s %s names port %q, which the container does not declare", c.Name, what, port.StrVal)
					}
				}
			}
		}
	}
	selectsPod := func(ns string, sel labels.Selector) []pod {
		var out []pod
		for _, p := range pods {
			if p.o.NS == ns && sel.Matches(p.labels) {
				out = append(out, p)
			}
		}
		return out
	}
	for _, o := range objs {
		switch x := o.Typed.(type) {
		case *corev1.Service:
			if len(x.Spec.Selector) == 0 {
				continue
			}
			sel := labels.SelectorFromSet(x.Spec.Selector)
			matched := selectsPod(o.NS, sel)
			if len(matched) == 0 {
				bad(o, "selector %v selects no pod of the manifests", x.Spec.Selector)
				continue
			}
			for _, sp := range x.Spec.Ports {
				if sp.TargetPort.Type != intstr.String {
					continue
				}
				for _, p := range matched {
					found := false
					for _, c := range p.spec.Containers {
						for _, cp := range c.Ports {
							if cp.Name == sp.TargetPort.StrVal {
								found = true
							}
						}
					}
					if !found {
						bad(o, "port %s: targetPort %q is no container port of %s", sp.Name, sp.TargetPort.StrVal, p.o)
					}
				}
			}
		case *policyv1.PodDisruptionBudget:
			if x.Spec.Selector == nil {
				bad(o, "no selector")
				continue
			}
			sel, err := metav1.LabelSelectorAsSelector(x.Spec.Selector)
			if err != nil {
				bad(o, "selector: %v", err)
				continue
			}
			if len(selectsPod(o.NS, sel)) == 0 {
				bad(o, "selector %v selects no pod of the manifests", sel)
			}
		}
	}
	return errs
}

// findObject returns the single object of a kind and name (any namespace when
// ns is empty), failing the test otherwise.
func findObject(t testing.TB, objs []*kubeObject, kind, ns, name string) *kubeObject {
	t.Helper()
	var found []*kubeObject
	for _, o := range objs {
		if o.GVK.Kind == kind && (ns == "" || o.NS == ns) && (name == "" || o.Name == name) {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one %s %s/%s, found %d", kind, ns, name, len(found))
	}
	return found[0]
}

func objectsOfKind(objs []*kubeObject, kind string) []*kubeObject {
	var out []*kubeObject
	for _, o := range objs {
		if o.GVK.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

// checkRestricted finds what the Pod Security Standard "restricted" forbids
// in the workloads' pods (https://kubernetes.io/docs/concepts/security/pod-security-standards/):
// a namespace labelled pod-security.kubernetes.io/enforce=restricted would
// refuse them.
func checkRestricted(objs []*kubeObject) []error {
	var errs []error
	allowedVolumes := map[string]bool{"configMap": true, "csi": true, "downwardAPI": true, "emptyDir": true, "ephemeral": true, "persistentVolumeClaim": true, "projected": true, "secret": true}
	for _, o := range objs {
		_, pod, _ := podSpecOf(o)
		if pod == nil {
			continue
		}
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s: restricted pod security: %s", o, fmt.Sprintf(format, args...)))
		}
		if pod.HostNetwork || pod.HostPID || pod.HostIPC {
			bad("host namespaces")
		}
		for _, v := range pod.Volumes {
			raw, _ := json.Marshal(v.VolumeSource)
			var m map[string]any
			_ = json.Unmarshal(raw, &m)
			for k := range m {
				if !allowedVolumes[k] {
					bad("volume %s is a %s", v.Name, k)
				}
			}
		}
		psc := pod.SecurityContext
		if psc == nil {
			psc = &corev1.PodSecurityContext{}
		}
		for _, c := range append(append([]corev1.Container{}, pod.InitContainers...), pod.Containers...) {
			sc := c.SecurityContext
			if sc == nil {
				sc = &corev1.SecurityContext{}
			}
			if sc.Privileged != nil && *sc.Privileged {
				bad("container %s is privileged", c.Name)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				bad("container %s: allowPrivilegeEscalation is not false", c.Name)
			}
			dropAll := false
			if sc.Capabilities != nil {
				for _, d := range sc.Capabilities.Drop {
					dropAll = dropAll || d == "ALL"
				}
				for _, a := range sc.Capabilities.Add {
					if a != "NET_BIND_SERVICE" {
						bad("container %s adds capability %s", c.Name, a)
					}
				}
			}
			if !dropAll {
				bad("container %s does not drop ALL capabilities", c.Name)
			}
			nonRoot := sc.RunAsNonRoot
			if nonRoot == nil {
				nonRoot = psc.RunAsNonRoot
			}
			if nonRoot == nil || !*nonRoot {
				bad("container %s: runAsNonRoot is not true", c.Name)
			}
			if (sc.RunAsUser != nil && *sc.RunAsUser == 0) || (sc.RunAsUser == nil && psc.RunAsUser != nil && *psc.RunAsUser == 0) {
				bad("container %s runs as uid 0", c.Name)
			}
			sp := sc.SeccompProfile
			if sp == nil {
				sp = psc.SeccompProfile
			}
			if sp == nil || (sp.Type != corev1.SeccompProfileTypeRuntimeDefault && sp.Type != corev1.SeccompProfileTypeLocalhost) {
				bad("container %s: no seccompProfile RuntimeDefault (or Localhost), on the pod or the container", c.Name)
			}
			for _, p := range c.Ports {
				if p.HostPort != 0 {
					bad("container %s uses hostPort %d", c.Name, p.HostPort)
				}
			}
		}
	}
	return errs
}
