package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/integration/harness"
)

// Scenario 4: `edgepass sessions revoke <sid>` reaches both Traefik replicas
// over NATS (external nats-server, edges with restricted permissions); the
// same user's other session keeps working.
func TestRevokeSessionWithCLIReachesEveryReplica(t *testing.T) {
	s := external(t)
	first := signIn(t, s, harness.AliceUser, harness.AlicePassword)
	second := signIn(t, s, harness.AliceUser, harness.AlicePassword)
	if first.claims.SessionID == second.claims.SessionID {
		t.Fatal("two sign-ins share a session id")
	}
	path := harness.PathApp + "/revocation"
	mustStatus(t, s.Traefiks, path, bearer(first.token), http.StatusOK, "before revocation")

	listed := cli(t, s.Daemon, "sessions", "list", "--user=alice")
	if !strings.Contains(listed, first.claims.SessionID) || !strings.Contains(listed, second.claims.SessionID) {
		t.Fatalf("`edgepass sessions list --user=alice` does not show both sessions:\n%s", listed)
	}

	start := time.Now()
	out := cli(t, s.Daemon, "sessions", "revoke", first.claims.SessionID)
	cliTook := time.Since(start)
	took := waitStatus(t, s, s.Traefiks, path, bearer(first.token), http.StatusUnauthorized, 10*time.Second, "revoked session")
	for name, d := range took {
		took[name] = d + cliTook
	}
	t.Logf("revocation propagation, from the CLI command's start (the CLI itself took %s): %s; CLI said: %s", cliTook.Round(time.Millisecond), formatDurations(took), strings.TrimSpace(out))

	// The browser holding the revoked cookie is sent to login again.
	req, _ := harness.NavRequest("GET", s.Traefiks[1].URL+path, nil)
	resp, _, err := first.browser.Do(req)
	if err != nil || resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), s.Daemon.LoginURL()) {
		t.Fatalf("browser with a revoked cookie: %v %v, want 302 to login", err, resp)
	}
	// The other session is untouched.
	mustStatus(t, s.Traefiks, path, bearer(second.token), http.StatusOK, "the user's other session")

	listed = cli(t, s.Daemon, "sessions", "list", "--user=alice")
	if strings.Contains(listed, first.claims.SessionID) {
		t.Errorf("revoked session still listed:\n%s", listed)
	}
	if !strings.Contains(listed, second.claims.SessionID) {
		t.Errorf("other session missing from the list:\n%s", listed)
	}
	// The daemon's ForwardAuth /verify agrees.
	code, body, _ := get(t, s.Traefiks[0].URL+harness.PathFwd+"/x", bearer(first.token))
	if code != http.StatusUnauthorized {
		t.Errorf("ForwardAuth route accepted the revoked token: %d %.200s", code, body)
	}
}

// A user-wide revocation (`edgepass users revoke <sub>`) refuses every
// token the user holds, on every replica.
func TestRevokeUserWithCLIRefusesAllTheirTokens(t *testing.T) {
	s := external(t)
	a := signIn(t, s, harness.BobUser, harness.BobPassword)
	b := signIn(t, s, harness.BobUser, harness.BobPassword)
	path := harness.PathApp + "/user-revocation"
	mustStatus(t, s.Traefiks, path, bearer(a.token), http.StatusOK, "before revocation")
	// iat is in seconds: a token issued in the same second as the
	// revocation is refused too (iat <= before).
	cli(t, s.Daemon, "users", "revoke", "bob")
	took := waitStatus(t, s, s.Traefiks, path, bearer(a.token), http.StatusUnauthorized, 10*time.Second, "user revocation, first token")
	waitStatus(t, s, s.Traefiks, path, bearer(b.token), http.StatusUnauthorized, 10*time.Second, "user revocation, second token")
	t.Logf("user revocation propagation: %s", formatDurations(took))

	// Signing in again afterwards works: the revocation covers tokens issued
	// before it, not the user forever.
	time.Sleep(1100 * time.Millisecond)
	c := signIn(t, s, harness.BobUser, harness.BobPassword)
	mustStatus(t, s.Traefiks, path, bearer(c.token), http.StatusOK, "new sign-in after a user revocation")
}
