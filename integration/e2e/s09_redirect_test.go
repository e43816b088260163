package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/edgepass/edgepass/integration/harness"
)

// Scenario 9: a login whose rd points outside session.allowedDomains never
// sends the browser off this machine: it lands on the default page, never on
// the attacker's host. An allowed rd is honoured.
func TestLoginRefusesOpenRedirect(t *testing.T) {
	s := shared(t)
	b := harness.NewBrowser(s.Provider.Issuer)
	defaultPage := s.Daemon.Spec.DefaultRedirect

	// Sign in first (an allowed rd), so later logins need no password.
	good := s.Traefiks[1].URL + harness.PathApp + "/welcome?x=1"
	page, shown, err := b.SignIn(s.Daemon.LoginURL()+"?rd="+url.QueryEscape(good), harness.AliceUser, harness.AlicePassword)
	if err != nil {
		t.Fatal(err)
	}
	if !shown || page.URL.String() != good || page.Status != http.StatusOK {
		t.Fatalf("login with the allowed rd %s (credentials asked: %v) did not land there:\n%s", good, shown, page.Trace())
	}

	evil := []string{
		"http://evil.example.net/steal",
		"https://evil.example.net/",
		"//evil.example.net/steal",
		"http://127.0.0.1.evil.example.net/",
		"http://localhost.evil.example.net/",
		"http://evil.example.net#@127.0.0.1/",
		"javascript:alert(document.cookie)",
		"data:text/html,<script>alert(1)</script>",
		"http://evil.example.net\\@127.0.0.1/",
		"ftp://127.0.0.1/",
	}
	for _, rd := range evil {
		login := s.Daemon.LoginURL() + "?rd=" + url.QueryEscape(rd)
		page, _, err := b.SignIn(login, harness.AliceUser, harness.AlicePassword)
		if err != nil {
			t.Fatalf("rd=%q: %v", rd, err)
		}
		for _, h := range page.Hops {
			u, err := url.Parse(h.Location)
			if h.Location != "" && err == nil && u.IsAbs() && !harness.IsLoopback(u) {
				t.Errorf("rd=%q: redirected off this machine to %q:\n%s", rd, h.Location, page.Trace())
			}
			low := strings.ToLower(h.Location)
			if strings.HasPrefix(low, "javascript:") || strings.HasPrefix(low, "data:") || strings.HasPrefix(low, "ftp:") || strings.HasPrefix(h.Location, "//") {
				t.Errorf("rd=%q: redirected to %q", rd, h.Location)
			}
		}
		if page.URL.String() != defaultPage || page.Status != http.StatusOK {
			t.Errorf("rd=%q: ended on %s (%d), want the default page %s:\n%s", rd, page.URL, page.Status, defaultPage, page.Trace())
		}
	}
}
