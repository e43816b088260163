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

	page, err := alice.browser.Navigate(s.Provider.Issuer + "/session/end")
	if err != nil {
		t.Fatal(err)
	}
	page, confirmed, err := alice.browser.ConfirmProviderLogout(page)
	if err != nil || !confirmed {
		t.Fatalf("provider logout (confirmed %v): %v\n%s", confirmed, err, page.Trace())
	}
	start := time.Now()
	took := waitStatus(t, s, s.Traefiks, path, bearer(alice.token), http.StatusUnauthorized, 10*time.Second, "back-channel logout")
	t.Logf("back-channel logout reached the edges %s after the provider confirmed: %s", time.Since(start).Round(time.Millisecond), formatDurations(took))
	if !s.Provider.LogContains("back-channel logout delivered for alice") {
		t.Errorf("the provider did not log a delivered back-channel logout:\n%s", s.Provider.Tail(10))
	}
}
