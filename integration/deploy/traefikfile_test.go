package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/edgepass/edgepass/integration/harness"
)

// The file-provider example (deploy/traefik/dynamic.yml) follows the same
// rules as the Kubernetes base: no secret in the dynamic configuration
// (Traefik's API shows it), trust anchors set, and a ForwardAuth route that
// strips every spoofable spelling of the identity headers.
func TestTraefikFileExampleHoldsNoSecretAndStripsSpoofedHeaders(t *testing.T) {
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "deploy", "traefik", "dynamic.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc obj
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("dynamic.yml: %v", err)
	}
	mws, _ := get(doc, "http", "middlewares").(obj)
	if len(mws) == 0 {
		t.Fatal("dynamic.yml has no middlewares")
	}
	plugins := 0
	for name, v := range mws {
		m, _ := v.(obj)
		if fa, ok := get(m, "forwardAuth").(obj); ok {
			if _, plain := fa["authResponseHeaders"]; plain {
				t.Errorf("%s: authResponseHeaders copies only the exact names; use authResponseHeadersRegex", name)
			}
			if got := str(fa, "authResponseHeadersRegex"); got != harness.DefaultForwardAuthRegex() {
				t.Errorf("%s: authResponseHeadersRegex = %q, want policy's %q", name, got, harness.DefaultForwardAuthRegex())
			}
			continue
		}
		conf, _ := get(m, "plugin", "edgepass").(obj)
		if conf == nil {
			continue
		}
		plugins++
		nats, _ := conf["nats"].(obj)
		for _, secret := range []string{"password", "token", "nkeySeed"} {
			if _, inline := nats[secret]; inline {
				t.Errorf("%s: nats.%s inline; use nats.%sFile", name, secret, secret)
			}
		}
		if nats != nil && str(nats, "passwordFile") == "" {
			t.Errorf("%s: no nats.passwordFile", name)
		}
		if anchors := list(conf["trustAnchors"]); nats != nil && len(anchors) == 0 {
			t.Errorf("%s: no trustAnchors", name)
		}
		for k := range conf {
			if strings.EqualFold(k, "removeCookie") && conf[k] == false {
				t.Errorf("%s: removeCookie false hands backends the session token", name)
			}
		}
	}
	if plugins == 0 {
		t.Fatal("dynamic.yml has no edgepass middleware")
	}
}
