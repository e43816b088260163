package serve

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/admin"
	"github.com/edgepass/edgepass/daemon/internal/fakeidp"
	"github.com/edgepass/edgepass/daemon/internal/poll"
	"github.com/edgepass/edgepass/plugin/token"
)

func TestServeTrustAnchorAndEncryptionKeyFiles(t *testing.T) {
	idp := fakeidp.Start("edgepass", fakeidp.User{Subject: "u-3", Username: "carol"})
	defer idp.Close()
	dir := t.TempDir()
	cfg := testConfig(t, idp, dir)
	d := start(t, cfg)

	data, err := os.ReadFile(filepath.Join(dir, "trust-anchor.pub"))
	if err != nil {
		t.Fatalf("trust anchor file: %v", err)
	}
	anchor := strings.TrimSpace(string(data))
	if _, err := token.ParseAnchors([]string{anchor}); err != nil || anchor != d.ring.Anchor() {
		t.Fatalf("trust anchor file holds %q (%v), the ring %q", anchor, err, d.ring.Anchor())
	}
	code, _, body := do(t, "GET", d.admin("/api/v1/keys"), map[string]string{"Authorization": "Bearer " + adminToken})
	var l admin.KeyList
	if err := json.Unmarshal([]byte(body), &l); code != 200 || err != nil || l.Anchor != anchor || l.SigningKeyID != d.ring.KeyID() {
		t.Fatalf("GET /api/v1/keys = %d %s", code, body)
	}
	if strings.Contains(body, "sealed") || strings.Contains(body, "seed") {
		t.Errorf("GET /api/v1/keys shows private material: %s", body)
	}
	modes := map[string]os.FileMode{"trust-anchor.pub": 0o644, "encryption.key": 0o600}
	for name, want := range modes {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: %v mode %v, want %v", name, err, st.Mode().Perm(), want)
		}
	}
	d.stop(t)
	d2 := start(t, cfg)
	if d2.ring.Anchor() != anchor {
		t.Error("the trust anchor changed across a restart: every edge would need reconfiguring")
	}
}

func TestServeRevokingTheSigningKeyEndsItsSessions(t *testing.T) {
	// Attack: the signing key leaked; after `edgepass keys revoke <kid>` no token it signed passes /verify and its sessions are gone.
	idp := fakeidp.Start("edgepass", fakeidp.User{Subject: "u-4", Username: "dave"})
	defer idp.Close()
	cfg := testConfig(t, idp, t.TempDir())
	d := start(t, cfg)
	cookie := d.login(t)
	leaked := d.ring.KeyID()
	list, _ := d.store.List(context.Background(), "u-4")
	if len(list) != 1 || list[0].KeyID != leaked {
		t.Fatalf("session records signing key %q, want %q", list[0].KeyID, leaked)
	}
	bearer := map[string]string{"Authorization": "Bearer " + adminToken}
	code, _, body := do(t, "POST", d.admin("/api/v1/keys/"+leaked+"/revoke"), bearer)
	var res admin.KeyRevokeResult
	if err := json.Unmarshal([]byte(body), &res); code != 200 || err != nil || !res.WasActive || res.Sessions != 1 || res.SigningKeyID == leaked {
		t.Fatalf("revoke: %d %s", code, body)
	}
	if list, _ := d.store.List(context.Background(), "u-4"); len(list) != 0 {
		t.Errorf("sessions signed by the revoked key remain: %v", list)
	}
	poll.Until(t, 10*time.Second, "revoked key refused at /verify", func() bool {
		code, _, _ := do(t, "GET", d.url("/verify"), map[string]string{"Authorization": "Bearer " + cookie.Value})
		return code == 401
	})
	_, _, jwks := do(t, "GET", d.url("/.well-known/jwks.json"), nil)
	if ks, _ := token.ParseJWKS([]byte(jwks)); ks == nil || func() bool { _, ok := ks.Lookup(leaked); return ok }() {
		t.Error("the JWKS still serves the revoked key")
	}
	poll.Until(t, 10*time.Second, "the edge state holds the key as revoked", func() bool { return d.watch.State().KeyRevoked(leaked) })
	// A new login signs with the new key and works.
	cookie2 := d.login(t)
	if code, _, _ := do(t, "GET", d.url("/verify"), map[string]string{"Authorization": "Bearer " + cookie2.Value}); code != 200 {
		t.Errorf("a token of the new key: /verify = %d", code)
	}
	if code, _, _ := do(t, "POST", d.admin("/api/v1/keys/nosuchkey/revoke"), bearer); code != 404 {
		t.Errorf("revoking an unknown key: %d, want 404", code)
	}
}
