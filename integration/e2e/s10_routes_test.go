package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/integration/harness"
	edgepass "github.com/edgepass/edgepass/plugin"
)

// The ForwardAuth route (daemon /verify) works: the comparison point of the
// benchmarks, and the fallback for edges that cannot load plugins.
func TestForwardAuthRoute(t *testing.T) {
	s := shared(t)
	alice := signIn(t, s, harness.AliceUser, harness.AlicePassword)
	for _, tr := range s.Traefiks {
		h := bearer(alice.token)
		h.Set(harness.HeaderUser, "mallory")
		code, body, e := get(t, tr.URL+harness.PathFwd+"/x", h)
		if code != http.StatusOK || e == nil {
			t.Fatalf("%s: ForwardAuth with a bearer token: %d %.300s", tr.Spec.Name, code, body)
		}
		if got := e.Values(harness.HeaderUser); len(got) != 1 || got[0] != "alice" {
			t.Errorf("%s: ForwardAuth X-Auth-User = %q, want [alice]", tr.Spec.Name, got)
		}
		if got := e.Get(harness.HeaderEmail); got != harness.AliceEmail {
			t.Errorf("%s: ForwardAuth X-Auth-Email = %q", tr.Spec.Name, got)
		}
		if !sameSet(splitGroups(e.Get(harness.HeaderGroups)), harness.AliceGroups) {
			t.Errorf("%s: ForwardAuth X-Auth-Groups = %q", tr.Spec.Name, e.Get(harness.HeaderGroups))
		}
		// The cookie works too (a browser).
		req, _ := harness.NavRequest("GET", tr.URL+harness.PathFwd+"/page", nil)
		resp, body, err := alice.browser.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: ForwardAuth with the cookie: %v %d %.200s", tr.Spec.Name, err, resp.StatusCode, body)
		}

		code, body, _ = get(t, tr.URL+harness.PathFwd+"/x", nil)
		if code != http.StatusUnauthorized {
			t.Errorf("%s: ForwardAuth without credentials (API): %d %.200s, want 401", tr.Spec.Name, code, body)
		}
		req, _ = harness.NavRequest("GET", tr.URL+harness.PathFwd+"/x", nil)
		resp, _, err = harness.NewBrowser("").Do(req)
		if err != nil || resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), s.Daemon.LoginURL()) {
			t.Errorf("%s: ForwardAuth without credentials (browser): %v %v, want 302 to login", tr.Spec.Name, err, resp)
		}
	}
}

// The public path and the route without middleware serve anonymous
// requests; the protected catch-all does not.
func TestPublicAndOpenRoutes(t *testing.T) {
	s := shared(t)
	for _, tr := range s.Traefiks {
		for _, p := range []string{harness.PathPublic + "/", harness.PathPublic + "/css/site.css", harness.PathOpen + "/x"} {
			code, body, e := get(t, tr.URL+p, nil)
			if code != http.StatusOK || e == nil {
				t.Errorf("%s: anonymous GET %s: %d %.200s, want 200 from the backend", tr.Spec.Name, p, code, body)
			}
		}
		for _, p := range []string{"/", "/elsewhere", harness.PathApp, harness.PathPublic + "x"} {
			if code, _, _ := get(t, tr.URL+p, nil); code != http.StatusUnauthorized {
				t.Errorf("%s: anonymous GET %s: %d, want 401", tr.Spec.Name, p, code)
			}
		}
	}
}

// Every replica reports its sync state to the daemon (GET /api/v1/edges and
// `edgepass edges`).
func TestEdgesReportToDaemon(t *testing.T) {
	s := shared(t)
	var body []byte
	if _, err := harness.WaitEvery(250*time.Millisecond, 15*time.Second, func() (bool, string) {
		var code int
		code, body = admin(t, s.Daemon, "GET", "/api/v1/edges", nil)
		all := code == http.StatusOK
		for _, tr := range s.Traefiks {
			all = all && strings.Contains(string(body), tr.Spec.Name)
		}
		return all, fmt.Sprintf("%d %s", code, body)
	}); err != nil {
		t.Fatalf("GET /api/v1/edges does not list every replica: %v", err)
	}
	out := cli(t, s.Daemon, "edges")
	for _, tr := range s.Traefiks {
		if !strings.Contains(out, tr.Spec.Name) {
			t.Errorf("`edgepass edges` does not list %s:\n%s", tr.Spec.Name, out)
		}
	}
	// Each replica names the plugin release it runs (a rollout shows
	// which Traefik still runs the old one).
	if got := strings.Count(out, edgepass.Version); got < len(s.Traefiks) {
		t.Errorf("`edgepass edges` shows plugin version %s on %d rows, want %d:\n%s", edgepass.Version, got, len(s.Traefiks), out)
	}
	// The admin API refuses requests without the token.
	code, _, _ := get(t, s.Daemon.AdminURL+"/api/v1/edges", nil)
	if code != http.StatusUnauthorized {
		t.Errorf("admin API without a token: %d, want 401", code)
	}
	code, _, _ = get(t, s.Daemon.AdminURL+"/api/v1/sessions", http.Header{"Authorization": {"Bearer wrong"}})
	if code != http.StatusUnauthorized {
		t.Errorf("admin API with a wrong token: %d, want 401", code)
	}
}

// Rotating the signing key: new tokens carry the new kid and every replica
// accepts them (keys pushed over NATS); tokens signed before stay valid.
func TestKeyRotationReachesEdges(t *testing.T) {
	s := shared(t)
	before := signIn(t, s, harness.BobUser, harness.BobPassword)
	code, body := admin(t, s.Daemon, "POST", "/api/v1/keys/rotate", nil)
	if code/100 != 2 {
		t.Fatalf("POST /api/v1/keys/rotate: %d %s", code, body)
	}
	after := signIn(t, s, harness.BobUser, harness.BobPassword)
	if after.claims.Kid == before.claims.Kid {
		t.Fatalf("token signed after rotation has the old kid %q", after.claims.Kid)
	}
	took := waitStatus(t, s, s.Traefiks, harness.PathApp+"/rotated", bearer(after.token), http.StatusOK, 10*time.Second, "token signed with the new key")
	t.Logf("new key usable at the edges: %s", formatDurations(took))
	mustStatus(t, s.Traefiks, harness.PathApp+"/rotated", bearer(before.token), http.StatusOK, "token signed with the previous key")
}
