package oidcflow

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/internal/natstest"
	keyring "github.com/edgepass/edgepass/daemon/keys"
	"github.com/edgepass/edgepass/daemon/seal"
	"github.com/edgepass/edgepass/plugin/token"
)

// ringIssuer is the issuer of tokens signed by the tests' real key rings.
const ringIssuer = "https://auth.example.com"

// ringSeal is the encryption key every replica of the tests shares.
var ringSeal = func() *seal.Key {
	k, _, err := seal.Generate()
	if err != nil {
		panic(err)
	}
	return k
}()

// openRing opens one replica's key ring on srv, as serve does: it signs
// session tokens and seals login states; replicas opened on the same
// server share it.
func openRing(t *testing.T, srv *natstest.Server) *keyring.Ring {
	t.Helper()
	r, err := keyring.Open(natstest.Context(t), srv.JS, keyring.Options{Bucket: "keys", Lifetime: 2 * time.Hour,
		ClockSkew: time.Minute, Issuer: ringIssuer, Seal: ringSeal})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(natstest.Context(t), nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// withRing makes the handler sign and seal login states with r.
func withRing(r *keyring.Ring) func(o *Options) {
	return func(o *Options) { o.Signer, o.Tokens, o.StateSeal = r, r, r.LoginStateSealer() }
}

// serveReplica runs another Handler with opts on its own server (the same
// publicURL, as behind a load balancer) and returns its URL.
func serveReplica(t *testing.T, opts Options) string {
	t.Helper()
	h, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	h.idp.retryAfter = 0
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// onServer points a URL of one replica at another.
func onServer(t *testing.T, raw, server string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := url.Parse(server)
	u.Scheme, u.Host = s.Scheme, s.Host
	return u.String()
}

// stateCookies are the browser's pending-login cookies.
func (e *env) stateCookies(t *testing.T, c *http.Client) []*http.Cookie {
	t.Helper()
	u, _ := url.Parse(e.srv.URL)
	var out []*http.Cookie
	for _, ck := range c.Jar.Cookies(u) {
		if strings.HasPrefix(ck.Name, e.h.cookies.statePrefix) {
			out = append(out, ck)
		}
	}
	return out
}

// setCookie puts a cookie in the browser as the daemon would have set it.
func (e *env) setCookie(t *testing.T, c *http.Client, name, value, path string) {
	t.Helper()
	u, _ := url.Parse(e.srv.URL)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: path}})
}

// Availability attack: pending logins lived in a 10,000-entry LRU of one
// replica, so 10,000 anonymous GET /login requests evicted every login in
// flight and its user got "Sign-in expired". The login now travels sealed in
// the browser's cookie; a flood (here from 20,000 addresses, so the rate
// limit does not stop it) cannot touch it.
func TestFloodOfLoginsCannotEndASignIn(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.LoginRateLimit, o.LoginRateBurst = 60, 20 })
	c := browser(t)
	cb := e.startLogin(t, c, "https://app.example.com/mine")
	for i := 0; i < 20000; i++ {
		req := httptest.NewRequest("GET", e.srv.URL+"/login", nil)
		req.RemoteAddr = fmt.Sprintf("198.18.%d.%d:40000", i/256, i%256)
		rec := httptest.NewRecorder()
		e.mux.ServeHTTP(rec, req)
		if rec.Code != http.StatusFound {
			t.Fatalf("flood request %d: status %d, want 302", i, rec.Code)
		}
	}
	resp := get(t, c, cb)
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "https://app.example.com/mine" ||
		sessionCookie(resp, DefaultCookieName) == nil {
		t.Fatalf("the login started before the flood: status %d to %q; want it to complete", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// Without sticky sessions the load balancer sends the callback to any
// replica: the one that did not start the login completes it, with nothing
// shared but the key ring and the session store.
func TestCallbackCompletesOnAnotherReplica(t *testing.T) {
	srv := natstest.Start(t)
	ringA, ringB := openRing(t, srv), openRing(t, srv)
	e := newEnv(t, withRing(ringA))
	other := e.opts
	withRing(ringB)(&other)
	b := serveReplica(t, other)

	c := browser(t)
	cb := e.startLogin(t, c, "https://app.example.com/after")
	resp := get(t, c, onServer(t, cb, b))
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "https://app.example.com/after" {
		t.Fatalf("callback on the other replica: status %d to %q; want 302 to the return URL", resp.StatusCode, resp.Header.Get("Location"))
	}
	ck := sessionCookie(resp, DefaultCookieName)
	if ck == nil || len(e.store.All()) != 1 {
		t.Fatalf("no session (%d stored)", len(e.store.All()))
	}
	v := &token.Verifier{Issuer: ringIssuer, Audience: keyring.Audience}
	if c, err := v.Verify(ck.Value, ringA.PublicKeys(), time.Now()); err != nil || c.SessionID != e.store.All()[0].ID {
		t.Fatalf("token from the other replica: %v", err)
	}

	// And the other way round, several times: any replica, any step.
	for i := 0; i < 3; i++ {
		c := browser(t)
		u := onServer(t, e.srv.URL, b) + "/login"
		r := get(t, c, u)
		r = get(t, c, r.Header.Get("Location"))
		if r := get(t, c, r.Header.Get("Location")); r.StatusCode != http.StatusFound || sessionCookie(r, DefaultCookieName) == nil {
			t.Fatalf("login started on the other replica, completed on the first: status %d", r.StatusCode)
		}
	}
}

// Attack: a login state in the browser is only as good as its seal and its
// binding. A modified cookie, one moved to another login, one sealed by
// another installation, one from another browser, or an expired one, is
// refused, and no session is created.
func TestLoginStateSealedAndBound(t *testing.T) {
	other, _, _ := seal.Generate()
	cases := []struct {
		name string
		// tamper edits the victim browser before it follows callback; it
		// may return another browser to follow it with.
		tamper func(t *testing.T, e *env, c *http.Client) *http.Client
		ok     bool
	}{
		{name: "untouched", ok: true, tamper: func(*testing.T, *env, *http.Client) *http.Client { return nil }},
		{name: "modified", tamper: func(t *testing.T, e *env, c *http.Client) *http.Client {
			ck := e.stateCookies(t, c)[0]
			v := []byte(ck.Value)
			i := len(v) / 2
			if v[i] == 'A' {
				v[i] = 'B'
			} else {
				v[i] = 'A'
			}
			e.setCookie(t, c, ck.Name, string(v), e.h.cookies.statePath)
			return nil
		}},
		{name: "moved to another login", tamper: func(t *testing.T, e *env, c *http.Client) *http.Client {
			mine := e.stateCookies(t, c)[0]
			e.startLogin(t, c, "")
			for _, ck := range e.stateCookies(t, c) {
				if ck.Name != mine.Name {
					e.setCookie(t, c, mine.Name, ck.Value, e.h.cookies.statePath)
				}
			}
			return nil
		}},
		{name: "sealed by another installation", tamper: func(t *testing.T, e *env, c *http.Client) *http.Client {
			ck := e.stateCookies(t, c)[0]
			e.setCookie(t, c, ck.Name, other.Seal([]byte(`{"n":"x"}`), "login"), e.h.cookies.statePath)
			return nil
		}},
		{name: "from another browser", tamper: func(t *testing.T, e *env, c *http.Client) *http.Client {
			// The other browser has a binding cookie of its own.
			thief := browser(t)
			e.startLogin(t, thief, "")
			ck := e.stateCookies(t, c)[0]
			e.setCookie(t, thief, ck.Name, ck.Value, e.h.cookies.statePath)
			return thief
		}},
		{name: "expired", tamper: func(t *testing.T, e *env, c *http.Client) *http.Client {
			e.h.now = func() time.Time { return time.Now().Add(PendingTTL + time.Minute) }
			return nil
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			c := browser(t)
			cb := e.startLogin(t, c, "")
			if n := len(e.stateCookies(t, c)); n != 1 {
				t.Fatalf("/login left %d login-state cookies, want 1", n)
			}
			if b := tc.tamper(t, e, c); b != nil {
				c = b
			}
			resp := get(t, c, cb)
			if tc.ok {
				if resp.StatusCode != http.StatusFound || len(e.store.All()) != 1 {
					t.Fatalf("status %d, %d sessions; want the login to complete", resp.StatusCode, len(e.store.All()))
				}
				return
			}
			if resp.StatusCode != http.StatusBadRequest || sessionCookie(resp, DefaultCookieName) != nil || len(e.store.All()) != 0 {
				t.Fatalf("status %d, %d sessions; want 400 and no session", resp.StatusCode, len(e.store.All()))
			}
			if e.metrics.failure(ReasonState) != 1 {
				t.Errorf("state failure not counted: %v", e.metrics.failures)
			}
		})
	}
}

// Rotating the login-state key (on schedule, or `edgepass keys rotate`)
// must not end the logins started before it.
func TestLoginStartedBeforeStateKeyRotationCompletes(t *testing.T) {
	srv := natstest.Start(t)
	ring := openRing(t, srv)
	e := newEnv(t, withRing(ring))
	c := browser(t)
	cb := e.startLogin(t, c, "")
	if _, err := ring.RotateLoginStateKey(natstest.Context(t)); err != nil {
		t.Fatal(err)
	}
	if resp := get(t, c, cb); resp.StatusCode != http.StatusFound || sessionCookie(resp, DefaultCookieName) == nil {
		t.Fatalf("login started before the rotation: status %d, want it to complete", resp.StatusCode)
	}
	if resp := e.login(t, browser(t), ""); resp.StatusCode != http.StatusFound {
		t.Fatalf("login started after the rotation: status %d", resp.StatusCode)
	}
}

// Several tabs of one browser signing in at once each complete, in any order.
func TestSeveralTabsSignInAtOnce(t *testing.T) {
	e := newEnv(t, nil)
	c := browser(t)
	var cbs []string
	for i := 0; i < DefaultPendingLogins; i++ {
		cbs = append(cbs, e.startLogin(t, c, fmt.Sprintf("https://app.example.com/tab%d", i)))
	}
	for i := len(cbs) - 1; i >= 0; i-- {
		resp := get(t, c, cbs[i])
		if want := fmt.Sprintf("https://app.example.com/tab%d", i); resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != want {
			t.Fatalf("tab %d: status %d to %q, want 302 to %s", i, resp.StatusCode, resp.Header.Get("Location"), want)
		}
	}
	if n := len(e.stateCookies(t, c)); n != 0 {
		t.Errorf("%d login-state cookies left after every login completed", n)
	}
}

// A login-state cookie must stay one cookie: a return URL too long for it
// (the return URL policy allows 4 KB) lands on the default page instead of
// breaking the login, and every cookie stays within what browsers keep.
func TestLongReturnURLKeepsTheLoginWorking(t *testing.T) {
	cases := []struct {
		name, rd, want string
	}{
		{"long but fits", "https://app.example.com/" + strings.Repeat("a", 1500), "https://app.example.com/" + strings.Repeat("a", 1500)},
		{"too long for a cookie", "https://app.example.com/" + strings.Repeat("a", 4000), "https://app.example.com/"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.CookieSecure = true })
			c := browser(t)
			resp := get(t, c, e.srv.URL+"/login?rd="+url.QueryEscape(tc.rd))
			for _, ck := range resp.Cookies() {
				if n := len(ck.Name) + 1 + len(ck.Value); n > maxCookieBytes {
					t.Fatalf("cookie %s is %d bytes", ck.Name, n)
				}
			}
			resp = get(t, c, get(t, c, resp.Header.Get("Location")).Header.Get("Location"))
			if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != tc.want {
				t.Fatalf("callback: status %d to a URL of %d bytes, want 302 to one of %d", resp.StatusCode, len(resp.Header.Get("Location")), len(tc.want))
			}
		})
	}
}
