package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/edgepass/edgepass/integration/harness"
)

// Signing out at the identity provider itself (not through edgepass) ends
// the edgepass session at every edge: the provider's back-channel logout
// reaches the daemon, which revokes the session over NATS.
func TestProviderLogoutRevokesThroughBackchannel(t *testing.T) {
	s := shared(t)
	alice := signIn(t, s, harness.AliceUser, harness.AlicePassword)
	path := harness.PathApp + "/backchannel"
	mustStatus(t, s.Traefiks, path, bearer(alice.token), http.StatusOK, "before the provider logout")

	signOutAtProvider(t, alice)
	start := time.Now()
	took := waitStatus(t, s, s.Traefiks, path, bearer(alice.token), http.StatusUnauthorized, 10*time.Second, "back-channel logout")
	t.Logf("back-channel logout reached the edges %s after the provider confirmed: %s", time.Since(start).Round(time.Millisecond), formatDurations(took))
	if !s.Provider.LogContains("back-channel logout delivered for alice") {
		t.Errorf("the provider did not log a delivered back-channel logout:\n%s", s.Provider.Tail(10))
	}
}

// A provider whose logout tokens carry neither exp nor sub (a certified
// provider's current release; older Authentik releases) must still end the
// session at every edge within a second: before, the daemon answered 400
// and the user stayed signed in until the session's lifetime ran out.
func TestProviderLogoutWithoutExpAndSubReachesEveryEdge(t *testing.T) {
	s := shared(t)
	if err := s.Provider.SetLogoutTokenOmit("exp", "sub"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Provider.SetLogoutTokenOmit() })
	bob := signIn(t, s, harness.BobUser, harness.BobPassword)
	path := harness.PathApp + "/backchannel-no-exp"
	mustStatus(t, s.Traefiks, path, bearer(bob.token), http.StatusOK, "before the provider logout")

	signOutAtProvider(t, bob)
	took := waitStatus(t, s, s.Traefiks, path, bearer(bob.token), http.StatusUnauthorized, 5*time.Second, "back-channel logout without exp and sub")
	for name, d := range took {
		if d > time.Second {
			t.Errorf("%s refused the session %s after the provider's logout, want within 1s", name, d)
		}
	}
	if !s.Provider.LogContains("logout token sent without exp,sub") {
		t.Errorf("the provider did not send a logout token without exp and sub:\n%s", s.Provider.Tail(10))
	}
	if !s.Daemon.LogContains("omit optional claims") {
		t.Errorf("the daemon did not note the omitted claims:\n%s", s.Daemon.Tail(10))
	}
}

// signOutAtProvider signs l out at the provider itself, not through
// edgepass: its end-session page, confirmed.
func signOutAtProvider(t *testing.T, l *login) {
	t.Helper()
	page, err := l.browser.Navigate(l.browser.ProviderIssuer + "/session/end")
	if err != nil {
		t.Fatalf("provider logout: %v", err)
	}
	page, confirmed, err := l.browser.ConfirmProviderLogout(page)
	if err != nil || !confirmed {
		t.Fatalf("provider logout (confirmed %v): %v\n%s", confirmed, err, page.Trace())
	}
}
