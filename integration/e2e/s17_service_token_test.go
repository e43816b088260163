package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/integration/harness"
)

// createServiceToken runs `edgepass tokens create` and returns the token.
func createServiceToken(t *testing.T, s *harness.Stack, name string, flags ...string) string {
	t.Helper()
	out := cli(t, s.Daemon, append([]string{"tokens", "create"}, append(flags, name)...)...)
	raw := strings.TrimSpace(out)
	if strings.Count(raw, ".") != 2 || strings.ContainsAny(raw, " \n") {
		t.Fatalf("tokens create printed %q, want the token alone", out)
	}
	return raw
}

// Scenario 17: a service token from `edgepass tokens create` reaches an API
// route that accepts service tokens for its audience, on every replica; it
// is refused where its groups or its scope do not fit, everywhere else, as a
// cookie, and at every edge within a second of `edgepass tokens revoke`.
func TestServiceTokenReachesAPIRouteAndIsRevokedEverywhere(t *testing.T) {
	s := shared(t)
	raw := createServiceToken(t, s, "robot-e2e", "--audiences="+harness.MachineAudience, "--groups=robots", "--expiresIn=30m")
	claims := decodeToken(t, raw)

	for _, tr := range s.Traefiks {
		code, body, e := get(t, tr.URL+harness.PathMachine+"/items", bearer(raw))
		if code != http.StatusOK || e == nil {
			t.Fatalf("%s: service token on the machine route: %d %.300s", tr.Spec.Name, code, body)
		}
		if e.Get(harness.HeaderUser) != "robot-e2e" || e.Get(harness.HeaderSubject) != "service:robot-e2e" || e.Get(harness.HeaderGroups) != "robots" {
			t.Fatalf("%s: identity %v", tr.Spec.Name, e.Headers)
		}
		if e.Get("Authorization") != "" {
			t.Fatalf("%s: the backend got the service token", tr.Spec.Name)
		}
		// Its groups do not fit the admins-only machine route.
		if code, body, _ := get(t, tr.URL+harness.PathMachineAdmins+"/items", bearer(raw)); code != http.StatusForbidden {
			t.Fatalf("%s: admins-only route: %d %.200s", tr.Spec.Name, code, body)
		}
		// Routes that do not accept service tokens say the audience is wrong.
		code, body, _ = get(t, tr.URL+harness.PathApp+"/items", bearer(raw))
		if code != http.StatusUnauthorized {
			t.Fatalf("%s: session-only route: %d %.200s", tr.Spec.Name, code, body)
		}
		// Attack: the service token planted as a session cookie.
		if code, _, _ := get(t, tr.URL+harness.PathMachine+"/items", http.Header{"Cookie": {"edgepass_session=" + raw}}); code != http.StatusUnauthorized {
			t.Fatalf("%s: service token as a cookie: %d", tr.Spec.Name, code)
		}
	}
	h := wwwAuthenticate(t, s.Traefiks[0].URL+harness.PathApp+"/items", bearer(raw))
	if !strings.Contains(h, `error="invalid_token"`) || !strings.Contains(h, `error_description="wrong_audience"`) {
		t.Fatalf("WWW-Authenticate on a route without service tokens: %q", h)
	}

	// A token scoped to other routes is refused by this one, saying why.
	other := createServiceToken(t, s, "robot-elsewhere", "--audiences=reports-api", "--expiresIn=30m")
	if h := wwwAuthenticate(t, s.Traefiks[1].URL+harness.PathMachine+"/items", bearer(other)); !strings.Contains(h, `error_description="wrong_audience"`) {
		t.Fatalf("out-of-scope service token: %q", h)
	}

	// Listed with the sessions and on its own.
	if out := cli(t, s.Daemon, "sessions", "list"); !strings.Contains(out, claims.SessionID) {
		t.Fatalf("sessions list lacks the service token:\n%s", out)
	}
	if out := cli(t, s.Daemon, "tokens", "list"); !strings.Contains(out, claims.SessionID) || !strings.Contains(out, harness.MachineAudience) || strings.Contains(out, raw) {
		t.Fatalf("tokens list:\n%s", out)
	}

	start := time.Now()
	cli(t, s.Daemon, "tokens", "revoke", claims.SessionID)
	cliTook := time.Since(start)
	took := waitStatus(t, s, s.Traefiks, harness.PathMachine+"/items", bearer(raw), http.StatusUnauthorized, 5*time.Second, "revoked service token")
	for name, d := range took {
		if d > time.Second {
			t.Errorf("%s still accepted the revoked service token %s after the CLI returned (want within 1s)", name, d)
		}
	}
	t.Logf("service token revocation reached every edge (after the CLI's %s): %s", cliTook.Round(time.Millisecond), formatDurations(took))
	if h := wwwAuthenticate(t, s.Traefiks[0].URL+harness.PathMachine+"/items", bearer(raw)); !strings.Contains(h, `error_description="session_revoked"`) {
		t.Fatalf("revoked service token: %q", h)
	}
}

// wwwAuthenticate is the WWW-Authenticate of a 401 answer (fails otherwise).
func wwwAuthenticate(t *testing.T, rawURL string, header http.Header) string {
	t.Helper()
	req, _ := http.NewRequest("GET", rawURL, nil)
	req.Header.Set("Accept", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, body, err := harness.NewBrowser("").Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET %s: %d %.200s, want 401", rawURL, resp.StatusCode, body)
	}
	return resp.Header.Get("WWW-Authenticate")
}
