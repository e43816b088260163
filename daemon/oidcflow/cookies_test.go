package oidcflow

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/internal/sessiontest"
)

// Attack: a sibling subdomain or a plain-http page plants or overwrites the
// session or login binding cookie; the __Host- prefix makes browsers refuse
// that, so the daemon uses it wherever the prefix's rules allow (Secure, no
// Domain, Path=/) and keeps the plain name elsewhere.
func TestCookieNamesUseHostPrefixWhereAllowed(t *testing.T) {
	cases := []struct {
		name                     string
		secure                   bool
		domain                   string
		wantSession, wantBinding string
	}{
		{"secure, host-only", true, "", "__Host-edgepass_session", "__Host-edgepass_session_login"},
		{"secure, cookie domain set", true, "example.org", "edgepass_session", "__Host-edgepass_session_login"},
		{"plain http test setup", false, "", "edgepass_session", "edgepass_session_login"},
		{"plain http with a domain", false, "example.org", "edgepass_session", "edgepass_session_login"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.CookieSecure, o.CookieDomain = c.secure, c.domain })
			cl := browser(t)
			resp := get(t, cl, e.srv.URL+"/login")
			binding := sessionCookie(resp, c.wantBinding)
			if binding == nil {
				t.Fatalf("/login set cookies %v, want %s", names(resp.Cookies()), c.wantBinding)
			}
			checkPrefixRules(t, binding)
			var state *http.Cookie
			for _, ck := range resp.Cookies() {
				if strings.HasPrefix(ck.Name, c.wantBinding[:len(c.wantBinding)-len("login")]+"state_") {
					state = ck
				}
			}
			if state == nil || !state.HttpOnly || state.SameSite != http.SameSiteLaxMode || state.MaxAge != int(PendingTTL/time.Second) {
				t.Fatalf("/login set cookies %v; want a login-state cookie named like %sstate_…, HttpOnly, SameSite=Lax, for %s",
					names(resp.Cookies()), c.wantBinding[:len(c.wantBinding)-len("login")], PendingTTL)
			}
			checkPrefixRules(t, state)
			resp = get(t, cl, get(t, cl, resp.Header.Get("Location")).Header.Get("Location"))
			sess := sessionCookie(resp, c.wantSession)
			if sess == nil {
				t.Fatalf("/callback (status %d) set cookies %v, want %s", resp.StatusCode, names(resp.Cookies()), c.wantSession)
			}
			checkPrefixRules(t, sess)
			if c.domain != "" && sess.Domain != c.domain {
				t.Errorf("session cookie Domain %q, want %q", sess.Domain, c.domain)
			}
			if !sess.HttpOnly || sess.SameSite != http.SameSiteLaxMode || sess.Secure != c.secure {
				t.Errorf("session cookie attributes %+v", sess)
			}
		})
	}
}

// checkPrefixRules fails when a __Host- cookie breaks the prefix's rules
// (browsers would drop it): Secure, Path=/, no Domain.
func checkPrefixRules(t *testing.T, c *http.Cookie) {
	t.Helper()
	if strings.HasPrefix(c.Name, "__Host-") && (!c.Secure || c.Path != "/" || c.Domain != "") {
		t.Errorf("cookie %s: Secure %v, Path %q, Domain %q; the __Host- prefix needs Secure, Path=/ and no Domain", c.Name, c.Secure, c.Path, c.Domain)
	}
}

func names(cs []*http.Cookie) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

// A browser may hold the session under either name (the edges accept both;
// a cookie from before the prefix, or from a setup without it): sign-out
// finds it under either and deletes both.
func TestLogoutFindsSessionCookieUnderEitherName(t *testing.T) {
	for _, held := range []string{"__Host-edgepass_session", "edgepass_session"} {
		t.Run(held, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.CookieSecure = true })
			c, tok := e.loggedIn(t)
			u, _ := url.Parse(e.srv.URL)
			for _, n := range []string{"__Host-edgepass_session", "edgepass_session"} {
				c.Jar.SetCookies(u, []*http.Cookie{{Name: n, Value: "", MaxAge: -1, Path: "/"}})
			}
			c.Jar.SetCookies(u, []*http.Cookie{{Name: held, Value: tok, Path: "/", Secure: true}})
			resp := e.signOut(t, c, "")
			if got := e.edge.revokedSIDs(); len(got) != 1 || e.store.Len() != 0 {
				t.Fatalf("status %d: revoked %v, %d stored; want the session revoked", resp.StatusCode, got, e.store.Len())
			}
			var cleared []string
			for _, ck := range resp.Cookies() {
				if ck.MaxAge < 0 {
					cleared = append(cleared, ck.Name)
					checkPrefixRules(t, ck)
				}
			}
			if !slices.Contains(cleared, held) {
				t.Errorf("sign-out deleted %v, want %s among them", cleared, held)
			}
		})
	}
}

// A base name that already carries a prefix the configuration cannot honour
// would make browsers drop every session cookie: refused at start.
func TestNewRefusesPrefixedCookieNameItCannotSet(t *testing.T) {
	cases := []struct {
		name   string
		secure bool
		domain string
		ok     bool
	}{
		{"__Host-sess", true, "", true},
		{"__Host-sess", false, "", false},
		{"__Host-sess", true, "example.org", false},
		{"__Secure-sess", true, "example.org", true},
		{"__Secure-sess", false, "", false},
	}
	for _, c := range cases {
		_, err := New(Options{PublicURL: "https://auth.example.com", Issuer: "https://idp.example.com", ClientID: "c",
			Store: sessiontest.New(), Signer: fakeSigner{}, Tokens: fakeSigner{}, Edge: newFakeEdge(),
			CookieName: c.name, CookieSecure: c.secure, CookieDomain: c.domain})
		if (err == nil) != c.ok {
			t.Errorf("%s secure=%v domain=%q: err %v, want ok %v", c.name, c.secure, c.domain, err, c.ok)
		}
	}
}

// A fresh sign-in deletes a session cookie left under the other name, which
// edges would otherwise keep trying.
func TestCallbackDeletesCookieUnderTheOtherName(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.CookieSecure = true })
	c := browser(t)
	u, _ := url.Parse(e.srv.URL)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: "edgepass_session", Value: "stale", Path: "/"}})
	resp := e.login(t, c, "")
	var deleted, set bool
	for _, ck := range resp.Cookies() {
		deleted = deleted || ck.Name == "edgepass_session" && ck.MaxAge < 0
		set = set || ck.Name == "__Host-edgepass_session" && ck.Value != ""
	}
	if !deleted || !set {
		t.Fatalf("callback cookies %v: want __Host-edgepass_session set and edgepass_session deleted", names(resp.Cookies()))
	}
}
