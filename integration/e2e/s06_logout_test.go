package e2e

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/edgepass/edgepass/integration/harness"
)

// Scenario 6: logging out at the daemon clears the session at every edge and
// ends the provider session: the next login asks for credentials again.
func TestLogoutEndsSessionAtEdgesAndProvider(t *testing.T) {
	s := shared(t)
	alice := signIn(t, s, harness.AliceUser, harness.AlicePassword)
	path := harness.PathApp + "/logout-check"
	mustStatus(t, s.Traefiks, path, bearer(alice.token), http.StatusOK, "before logout")

	back := s.Traefiks[1].URL + harness.PathApp + "/after-logout"
	// GET /logout only asks; the confirmation form (a same-origin POST
	// with a CSRF token) signs out.
	page, err := alice.browser.SignOut(s.Daemon.PublicURL + "/logout?rd=" + url.QueryEscape(back))
	if err != nil {
		t.Fatal(err)
	}
	if alice.browser.Cookie(s.Traefiks[0].URL, "edgepass_session") != "" {
		t.Errorf("the session cookie survived logout:\n%s", page.Trace())
	}
	page, confirmed, err := alice.browser.ConfirmProviderLogout(page)
	if err != nil {
		t.Fatal(err)
	}
	if !confirmed {
		t.Fatalf("logout did not reach the provider's end-session page (no RP-initiated logout):\n%s", page.Trace())
	}
	took := waitStatus(t, s, s.Traefiks, path, bearer(alice.token), http.StatusUnauthorized, 10*time.Second, "logged-out session")
	t.Logf("logout propagation: %s", formatDurations(took))

	// The post-logout redirect returned to the protected page, which sent the
	// browser to login: the provider must ask for the password again.
	if !alice.browser.OnProvider(page) || harness.FindForm(page.Forms(), "login") == nil {
		t.Fatalf("after logout, returning to %s did not end on the provider's sign-in form (provider session not ended?):\n%s", back, page.Trace())
	}
	page, shown, err := alice.browser.SignIn(back, harness.AliceUser, harness.AlicePassword)
	if err != nil || !shown {
		t.Fatalf("sign in after logout (credentials asked: %v): %v\n%s", shown, err, page.Trace())
	}
	if page.URL.String() != back || page.Status != http.StatusOK {
		t.Fatalf("sign in after logout did not land on %s:\n%s", back, page.Trace())
	}
	fresh := alice.browser.Cookie(s.Traefiks[0].URL, "edgepass_session")
	if fresh == "" || decodeToken(t, fresh).SessionID == alice.claims.SessionID {
		t.Fatal("sign in after logout did not create a new session")
	}
	mustStatus(t, s.Traefiks, path, bearer(alice.token), http.StatusUnauthorized, "old token after new sign-in")
}
