package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/integration/harness"
)

// Scenario 18: a script with client credentials at the IdP calls an API
// behind edgepass with the IdP's JWT access token. The edges verify it
// against the IdP's keys the daemon published (anchor-signed), map its
// groups like a login's, and admit it only where its groups fit; expired
// and wrong-audience tokens get a 401 whose WWW-Authenticate says why.
func TestClientCredentialsTokenReachesAPIRoute(t *testing.T) {
	s := shared(t)
	robot, err := s.Provider.ClientCredentialsToken(harness.RobotClient)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := s.Provider.ClientCredentialsToken(harness.OpsRobotClient)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range s.Traefiks {
		code, body, e := get(t, tr.URL+harness.PathMachine+"/items", bearer(robot))
		if code != http.StatusOK || e == nil {
			t.Fatalf("%s: client-credentials token on the API route: %d %.300s", tr.Spec.Name, code, body)
		}
		if e.Get(harness.HeaderSubject) != harness.RobotClient || e.Get(harness.HeaderGroups) != "robots" || e.Get("Authorization") != "" {
			t.Fatalf("%s: the backend saw %v", tr.Spec.Name, e.Headers)
		}
		// The route whose groups it lacks.
		if code, body, _ := get(t, tr.URL+harness.PathMachineAdmins+"/items", bearer(robot)); code != http.StatusForbidden {
			t.Fatalf("%s: robot on the admins-only route: %d %.200s", tr.Spec.Name, code, body)
		}
		// A client in admins gets in there.
		if code, body, e := get(t, tr.URL+harness.PathMachineAdmins+"/items", bearer(ops)); code != http.StatusOK || !sameSet(splitGroups(e.Get(harness.HeaderGroups)), []string{"admins", "robots"}) {
			t.Fatalf("%s: ops-robot on the admins-only route: %d %.200s", tr.Spec.Name, code, body)
		}
		// Routes without bearer refuse it.
		if code, _, _ := get(t, tr.URL+harness.PathApp+"/items", bearer(robot)); code != http.StatusUnauthorized {
			t.Fatalf("%s: route without bearer: %d", tr.Spec.Name, code)
		}
	}

	expired, err := s.Provider.SignedAccessToken("robot", harness.MachineAudience, []string{"robots"}, -120)
	if err != nil {
		t.Fatal(err)
	}
	otherAPI, err := s.Provider.SignedAccessToken("robot", "billing-api", []string{"robots"}, 300)
	if err != nil {
		t.Fatal(err)
	}
	idToken, err := s.Provider.SignedAccessToken("alice", "edgepass", []string{"admins"}, 300)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, raw, why string }{
		{"expired", expired, "expired"},
		{"another API's", otherAPI, "wrong_audience"},
		// Attack: a token the IdP issued to edgepass itself, replayed at the API.
		{"edgepass's own", idToken, "wrong_audience"},
		// Attack: a token signed with the IdP's key id but not its key.
		{"forged", tamper(robot), "bad_token"},
	} {
		for _, tr := range s.Traefiks {
			h := wwwAuthenticate(t, tr.URL+harness.PathMachine+"/items", bearer(tc.raw))
			want := `Bearer realm="edgepass", error="invalid_token", error_description="` + tc.why + `"`
			if h != want {
				t.Errorf("%s on %s: WWW-Authenticate %q, want %q", tc.name, tr.Spec.Name, h, want)
			}
		}
	}
	if t.Failed() {
		return
	}
	// Revoking the user (its sub) at the daemon covers its access tokens too.
	out := cli(t, s.Daemon, "users", "revoke", "sub:"+harness.RobotClient)
	waitStatus(t, s, s.Traefiks, harness.PathMachine+"/items", bearer(robot), http.StatusUnauthorized, 5*time.Second, "user revocation of the robot")
	if !strings.Contains(out, "Revoked user") {
		t.Logf("CLI said: %s", out)
	}
	if h := wwwAuthenticate(t, s.Traefiks[0].URL+harness.PathMachine+"/items", bearer(robot)); !strings.Contains(h, "user_revoked") {
		t.Fatalf("revoked robot: %q", h)
	}
}
