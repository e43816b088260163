package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/integration/harness"
)

// Scenario 1: an unauthenticated browser is sent to the daemon's /login,
// signs in at the provider, comes back through /callback to the page it
// asked for with a session cookie, and the backend sees the verified
// identity headers (and not the ones the client sends).
func TestBrowserLoginRoundTrip(t *testing.T) {
	s := shared(t)
	tr := s.Traefiks[0]
	original := tr.URL + harness.PathApp + "/reports/q3?year=2025&tab=a%20b"

	// First hop: the plugin redirects to loginURL?rd=<original URL>.
	b := harness.NewBrowser(s.Provider.Issuer)
	req, _ := harness.NavRequest("GET", original, nil)
	resp, body, err := b.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("unauthenticated navigation: %d, want 302 to the login; body %.200s", resp.StatusCode, body)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, s.Daemon.LoginURL()+"?") {
		t.Fatalf("redirect to %q, want %s?rd=…", loc, s.Daemon.LoginURL())
	}
	if rd := harness.QueryParam(loc, "rd"); rd != original {
		t.Fatalf("rd = %q, want the original URL %q", rd, original)
	}

	page, shown, err := b.SignIn(original, harness.AliceUser, harness.AlicePassword)
	if err != nil {
		t.Fatal(err)
	}
	if !shown {
		t.Fatalf("provider did not ask for credentials:\n%s", page.Trace())
	}
	if page.URL.String() != original || page.Status != http.StatusOK {
		t.Fatalf("did not land back on %s with 200:\n%s", original, page.Trace())
	}

	// The journey: Traefik → daemon /login → provider → daemon /callback → Traefik.
	var sawLogin, sawProvider, sawCallback bool
	var cookie *http.Cookie
	for _, h := range page.Hops {
		u, _ := url.Parse(h.URL)
		switch {
		case strings.HasPrefix(h.URL, s.Daemon.LoginURL()):
			sawLogin = true
			if q, _ := url.Parse(h.Location); q != nil && strings.HasPrefix(h.Location, s.Provider.Issuer) {
				if q.Query().Get("code_challenge") == "" || q.Query().Get("code_challenge_method") != "S256" {
					t.Errorf("authorization request without PKCE S256: %s", h.Location)
				}
				if q.Query().Get("state") == "" || q.Query().Get("nonce") == "" {
					t.Errorf("authorization request without state or nonce: %s", h.Location)
				}
			}
		case strings.HasPrefix(h.URL, s.Provider.Issuer):
			sawProvider = true
		case u != nil && u.Path == "/callback" && strings.HasPrefix(h.URL, s.Daemon.PublicURL):
			sawCallback = true
			if h.Location != original {
				t.Errorf("callback redirected to %q, want %q", h.Location, original)
			}
			for _, sc := range h.SetCookie {
				if c, err := http.ParseSetCookie(sc); err == nil && c.Name == "edgepass_session" {
					cookie = c
				}
			}
		}
	}
	if !sawLogin || !sawProvider || !sawCallback {
		t.Fatalf("journey missed a step (login %v, provider %v, callback %v):\n%s", sawLogin, sawProvider, sawCallback, page.Trace())
	}
	if cookie == nil {
		t.Fatalf("callback set no edgepass_session cookie:\n%s", page.Trace())
	}
	if !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || cookie.Path != "/" || cookie.Domain != "" {
		t.Errorf("session cookie attributes: HttpOnly %v SameSite %v Path %q Domain %q; want HttpOnly, Lax, /, host-only", cookie.HttpOnly, cookie.SameSite, cookie.Path, cookie.Domain)
	}

	// The token the daemon issued.
	c := decodeToken(t, cookie.Value)
	if c.Issuer != s.Daemon.PublicURL || c.Subject != "alice" || c.Email != harness.AliceEmail || c.Name != harness.AliceName || c.PreferredUsername != "alice" {
		t.Errorf("token claims %+v", c)
	}
	if aud, _ := c.Audience.(string); aud != "edgepass" {
		if arr, ok := c.Audience.([]any); !ok || len(arr) != 1 || arr[0] != "edgepass" {
			t.Errorf("token aud %v, want edgepass", c.Audience)
		}
	}
	if !sameSet(c.Groups, harness.AliceGroups) {
		t.Errorf("token groups %v, want %v", c.Groups, harness.AliceGroups)
	}
	if len(c.SessionID) < 22 || c.Kid == "" {
		t.Errorf("token sid %q (want 22+ chars), kid %q", c.SessionID, c.Kid)
	}
	if life := time.Duration(c.Expiry-c.IssuedAt) * time.Second; life < 59*time.Minute || life > 61*time.Minute {
		t.Errorf("token lifetime %s, want the configured 1h", life)
	}

	// What the backend saw on landing.
	e, err := harness.DecodeEchoed(page.Body)
	if err != nil {
		t.Fatal(err)
	}
	checkAliceHeaders(t, e)
	if strings.Contains(strings.Join(e.Values("Cookie"), ";"), "edgepass_session=") {
		t.Errorf("removeCookie: true, but the backend got the session cookie: %v", e.Values("Cookie"))
	}

	// The same browser on the second replica: no login, same identity; and
	// forged identity headers from the browser are replaced.
	for _, tr := range s.Traefiks {
		req, _ := harness.NavRequest("GET", tr.URL+harness.PathApp+"/again", nil)
		req.Header.Set(harness.HeaderUser, "mallory")
		req.Header.Set(harness.HeaderGroups, "admins")
		req.Header.Set("X-Forwarded-User", "mallory")
		req.Header.Set("Remote-User", "mallory")
		resp, body, err := b.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: signed-in browser got %d: %.200s", tr.Spec.Name, resp.StatusCode, body)
		}
		e, err := harness.DecodeEchoed(body)
		if err != nil {
			t.Fatal(err)
		}
		checkAliceHeaders(t, e)
		for _, h := range []string{"X-Forwarded-User", "Remote-User"} {
			if v := e.Values(h); len(v) > 0 {
				t.Errorf("%s: forged %s reached the backend: %v", tr.Spec.Name, h, v)
			}
		}
	}
}

// checkAliceHeaders: exactly one verified value per identity header.
func checkAliceHeaders(t *testing.T, e *harness.Echoed) {
	t.Helper()
	want := map[string]string{
		harness.HeaderUser:    "alice",
		harness.HeaderEmail:   harness.AliceEmail,
		harness.HeaderName:    harness.AliceName,
		harness.HeaderSubject: "alice",
	}
	for h, v := range want {
		if got := e.Values(h); len(got) != 1 || got[0] != v {
			t.Errorf("backend saw %s = %q, want exactly [%q]", h, got, v)
		}
	}
	if got := e.Values(harness.HeaderGroups); len(got) != 1 || !sameSet(splitGroups(got[0]), harness.AliceGroups) {
		t.Errorf("backend saw %s = %q, want one value with %v", harness.HeaderGroups, got, harness.AliceGroups)
	}
}
