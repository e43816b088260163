package oidcflow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/seal"
	"github.com/edgepass/edgepass/daemon/session"
)

// loggedIn signs a browser in and returns it with its session cookie value.
func (e *env) loggedIn(t *testing.T) (*http.Client, string) {
	t.Helper()
	c := browser(t)
	resp := e.login(t, c, "")
	ck := sessionCookie(resp, e.h.cookies.session)
	if ck == nil {
		t.Fatalf("login failed: status %d", resp.StatusCode)
	}
	return c, ck.Value
}

func TestLogoutRevokesAndRedirectsToEndSession(t *testing.T) {
	e := newEnv(t, nil)
	c, _ := e.loggedIn(t)
	s := e.store.All()[0]
	resp := e.signOut(t, c, "https://app.example.com/bye")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("logout status %d, want 302", resp.StatusCode)
	}
	if got := e.edge.revokedSIDs(); !slices.Equal(got, []string{s.ID}) {
		t.Fatalf("edge revocations %v, want [%s]", got, s.ID)
	}
	if e.edge.sessions[0].exp != s.ExpiresAt {
		t.Errorf("revocation exp %v, want the session's expiry %v", e.edge.sessions[0].exp, s.ExpiresAt)
	}
	if len(e.store.All()) != 0 {
		t.Errorf("session still stored after logout")
	}
	ck := sessionCookie(resp, DefaultCookieName)
	if ck == nil || ck.MaxAge >= 0 || ck.Value != "" {
		t.Errorf("cookie not cleared: %+v", ck)
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if loc.Scheme+"://"+loc.Host+loc.Path != e.idp.issuer()+"/end_session" {
		t.Fatalf("redirected to %q, want the IdP's end_session_endpoint", loc)
	}
	q := loc.Query()
	if q.Get("id_token_hint") != s.IDToken || q.Get("post_logout_redirect_uri") != e.srv.URL+LoggedOutPath ||
		q.Get("state") != "https://app.example.com/bye" || q.Get("client_id") != "edgepass" {
		t.Errorf("end_session query: %v", q)
	}
	// The IdP sends the browser back to the registered URI with state.
	back := get(t, c, q.Get("post_logout_redirect_uri")+"?state="+url.QueryEscape(q.Get("state")))
	if back.StatusCode != http.StatusFound || back.Header.Get("Location") != "https://app.example.com/bye" {
		t.Errorf("back from the IdP: %d to %q, want 302 to the return URL", back.StatusCode, back.Header.Get("Location"))
	}
	if e.metrics.revoked[KindLogout] != 1 {
		t.Errorf("logout revocation not counted: %v", e.metrics.revoked)
	}
}

// A valid cookie whose session is no longer stored is still revoked, with no
// expiry: the edge publisher then revokes it for a whole lifetime.
func TestLogoutOfUnstoredSessionRevokesForALifetime(t *testing.T) {
	e := newEnv(t, nil)
	c, _ := e.loggedIn(t)
	s := e.store.All()[0]
	if err := e.store.Delete(context.Background(), s.ID); err != nil {
		t.Fatal(err)
	}
	if resp := e.signOut(t, c, ""); resp.StatusCode != http.StatusFound {
		t.Fatalf("logout status %d, want 302", resp.StatusCode)
	}
	if got := e.edge.revokedSIDs(); !slices.Equal(got, []string{s.ID}) || !e.edge.sessions[0].exp.IsZero() {
		t.Fatalf("revocations %+v, want %s with a zero exp", e.edge.sessions, s.ID)
	}
}

// A return URL outside the allowed domains, posted with the form, falls
// back to the default.
func TestLogoutPOSTRefusesForeignReturnURL(t *testing.T) {
	e := newEnv(t, nil)
	c, _ := e.loggedIn(t)
	form := e.confirmation(t, c, "")
	form.Set("rd", "https://evil.com/")
	resp := e.postLogout(t, c, form, map[string]string{"Origin": e.srv.URL})
	if len(e.edge.revokedSIDs()) != 1 || len(e.store.All()) != 0 {
		t.Fatalf("POST /logout did not revoke")
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if got := loc.Query().Get("state"); got != "https://app.example.com/" {
		t.Fatalf("state %q: a refused rd must fall back to the default", got)
	}
}

// Attack: a crafted link to /logged-out with a foreign state, to bounce a
// user off the daemon to another site.
func TestLoggedOutRejectsOpenRedirect(t *testing.T) {
	e := newEnv(t, nil)
	for _, rd := range []string{"https://evil.com/", "//evil.com", "javascript:alert(1)"} {
		resp := get(t, browser(t), e.srv.URL+LoggedOutPath+"?state="+url.QueryEscape(rd))
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Location") != "" {
			t.Errorf("state %q: %d to %q; want the signed-out page", rd, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
}

func TestLogoutWithoutEndSessionRedirectsToReturnURL(t *testing.T) {
	e := newEnv(t, nil)
	e.idp.set(func(p *testIdP) { p.noEndSession = true })
	c, _ := e.loggedIn(t)
	resp := e.signOut(t, c, "https://x.example.org/")
	if resp.Header.Get("Location") != "https://x.example.org/" {
		t.Fatalf("redirected to %q", resp.Header.Get("Location"))
	}
	resp = e.signOut(t, c, "https://evil.com/")
	if resp.Header.Get("Location") != "https://app.example.com/" {
		t.Fatalf("refused rd redirected to %q, want the default", resp.Header.Get("Location"))
	}
}

// Attack: a cookie with a forged token naming someone else's sid, to log them out.
func TestLogoutIgnoresForgedCookie(t *testing.T) {
	e := newEnv(t, nil)
	e.loggedIn(t)
	victim := e.store.All()[0].ID
	c := browser(t)
	u, _ := url.Parse(e.srv.URL)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: DefaultCookieName, Value: "fake." + b64([]byte(`{"sid":"`+victim+`"}`)) + ".forged"}})
	resp := e.signOut(t, c, "")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if len(e.edge.revokedSIDs()) != 0 || len(e.store.All()) != 1 {
		t.Fatalf("forged cookie revoked the victim's session")
	}
}

func TestLogoutReportsEdgeFailure(t *testing.T) {
	e := newEnv(t, nil)
	c, _ := e.loggedIn(t)
	e.edge.fail = true
	resp := e.signOut(t, c, "")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502 when the edge cannot be told", resp.StatusCode)
	}
	if ck := sessionCookie(resp, DefaultCookieName); ck == nil || ck.MaxAge >= 0 {
		t.Errorf("cookie not cleared")
	}
	if len(e.store.All()) != 1 {
		t.Errorf("session deleted although the edge still accepts it")
	}
}

func postLogoutToken(t *testing.T, e *env, tok string) int {
	t.Helper()
	resp, err := http.PostForm(e.srv.URL+"/backchannel-logout", url.Values{"logout_token": {tok}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var body map[string]string
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body["error"] == "" {
			t.Errorf("error answer is not {\"error\":…}: %v %v", body, err)
		}
	}
	return resp.StatusCode
}

// Attack: a logout token that is forged, for another party, replayed from an
// ID token, or otherwise not a back-channel logout token.
func TestBackchannelLogoutRejectsForgedToken(t *testing.T) {
	e := newEnv(t, nil)
	e.loggedIn(t)
	p := e.idp
	cases := map[string]string{
		"other key": signRS256(t, otherKey(t), p.kid, map[string]any{"iss": p.issuer(), "aud": p.client, "iat": time.Now().Unix(),
			"exp": time.Now().Add(time.Minute).Unix(), "jti": "j", "sub": p.sub,
			"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}}),
		"other key, no exp": signRS256(t, otherKey(t), p.kid, map[string]any{"iss": p.issuer(), "aud": p.client, "iat": time.Now().Unix(),
			"jti": "j2", "sid": "idp-sid-1",
			"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}}),
		"expired, no sub": p.logoutToken(func(c map[string]any) {
			delete(c, "sub")
			c["sid"] = "idp-sid-1"
			c["exp"] = time.Now().Add(-time.Hour).Unix()
		}),
		"no sub, sid or exp":   p.logoutToken(func(c map[string]any) { delete(c, "sub"); delete(c, "exp") }),
		"aud array without us": p.logoutToken(func(c map[string]any) { c["aud"] = []string{"x", "y"} }),
		"iat a string":         p.logoutToken(func(c map[string]any) { c["iat"] = "now" }),
		"no events":            p.logoutToken(func(c map[string]any) { delete(c, "events") }),
		"wrong event":          p.logoutToken(func(c map[string]any) { c["events"] = map[string]any{"http://example.com/other": map[string]any{}} }),
		"nonce present":        p.logoutToken(func(c map[string]any) { c["nonce"] = "n" }),
		"other audience":       p.logoutToken(func(c map[string]any) { c["aud"] = "another-client" }),
		"other issuer":         p.logoutToken(func(c map[string]any) { c["iss"] = "https://evil.example.net" }),
		"expired":              p.logoutToken(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() }),
		"no sub or sid":        p.logoutToken(func(c map[string]any) { delete(c, "sub") }),
		"no jti":               p.logoutToken(func(c map[string]any) { delete(c, "jti") }),
		// A captured token replayed long after it was issued, though its exp is far away.
		"stale iat": p.logoutToken(func(c map[string]any) {
			c["iat"] = time.Now().Add(-time.Hour).Unix()
			c["exp"] = time.Now().Add(24 * time.Hour).Unix()
		}),
		"no iat":        p.logoutToken(func(c map[string]any) { delete(c, "iat") }),
		"future iat":    p.logoutToken(func(c map[string]any) { c["iat"] = time.Now().Add(time.Hour).Unix() }),
		"null event":    p.logoutToken(func(c map[string]any) { c["events"] = map[string]any{backchannelEvent: nil} }),
		"string event":  p.logoutToken(func(c map[string]any) { c["events"] = map[string]any{backchannelEvent: "logout"} }),
		"events string": p.logoutToken(func(c map[string]any) { c["events"] = backchannelEvent }),
		"alg none":      "eyJhbGciOiJub25lIn0." + b64([]byte(`{"sub":"user-1"}`)) + ".",
		"garbage":       "not a jwt",
		"empty":         "",
	}
	// An ID token of a real login, replayed as a logout token.
	cases["id token"] = e.store.All()[0].IDToken
	for name, tok := range cases {
		if code := postLogoutToken(t, e, tok); code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", name, code)
		}
	}
	if len(e.edge.revokedSIDs()) != 0 || len(e.edge.users) != 0 || len(e.store.All()) != 1 {
		t.Fatalf("a rejected logout token revoked something")
	}
}

func TestBackchannelLogoutRevokesBySid(t *testing.T) {
	e := newEnv(t, nil)
	e.loggedIn(t)
	e.idp.set(func(p *testIdP) { p.idClaims["sid"] = "idp-sid-2" })
	e.loggedIn(t)
	var keep, drop string
	for _, s := range e.store.All() {
		if s.IdPSessionID == "idp-sid-1" {
			drop = s.ID
		} else {
			keep = s.ID
		}
	}
	tok := e.idp.logoutToken(func(c map[string]any) { c["sid"] = "idp-sid-1" })
	if code := postLogoutToken(t, e, tok); code != http.StatusOK {
		t.Fatalf("status %d, want 200", code)
	}
	if got := e.edge.revokedSIDs(); !slices.Equal(got, []string{drop}) {
		t.Fatalf("revoked %v, want only %s", got, drop)
	}
	if l := e.store.All(); len(l) != 1 || l[0].ID != keep {
		t.Fatalf("remaining sessions %v", l)
	}
	if len(e.edge.users) != 0 {
		t.Errorf("a sid logout revoked the whole user")
	}
	// The same token again is a replay.
	if code := postLogoutToken(t, e, tok); code != http.StatusBadRequest {
		t.Errorf("replayed logout token: status %d, want 400", code)
	}
}

// Attack: the same logout token delivered many times at once (a replay racing
// the original) must be acted on once.
func TestBackchannelLogoutReplayedConcurrentlyRevokesOnce(t *testing.T) {
	e := newEnv(t, nil)
	e.loggedIn(t)
	tok := e.idp.logoutToken(func(c map[string]any) { c["sid"] = "idp-sid-1" })
	const n = 8
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { codes <- postLogoutToken(t, e, tok) })
	}
	wg.Wait()
	close(codes)
	ok := 0
	for c := range codes {
		switch c {
		case http.StatusOK:
			ok++
		case http.StatusBadRequest:
		default:
			t.Errorf("status %d", c)
		}
	}
	if ok != 1 {
		t.Fatalf("%d deliveries accepted, want exactly 1", ok)
	}
	if got := len(e.edge.revokedSIDs()); got != 1 {
		t.Fatalf("%d revocations published, want 1", got)
	}
}

// Providers that leave exp (and sub) out of their logout tokens — certified
// ones, and older Authentik releases — must still end the session: a refused
// logout token leaves the user signed in at every edge.
func TestBackchannelLogoutAcceptsTokenWithoutExpOrSub(t *testing.T) {
	cases := map[string]func(c map[string]any){
		"no exp": func(c map[string]any) { delete(c, "exp"); c["sid"] = "idp-sid-1" },
		"no sub": func(c map[string]any) { delete(c, "sub"); c["sid"] = "idp-sid-1" },
		"no exp and no sub, as the provider sends it": func(c map[string]any) {
			delete(c, "exp")
			delete(c, "sub")
			c["sid"] = "idp-sid-1"
		},
		"no exp, sub only": func(c map[string]any) { delete(c, "exp") },
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.loggedIn(t)
			if code := postLogoutToken(t, e, e.idp.logoutToken(mod)); code != http.StatusOK {
				t.Fatalf("status %d, want 200", code)
			}
			if n := len(e.edge.revokedSIDs()); n != 1 {
				t.Fatalf("%d sessions revoked at the edge, want 1", n)
			}
			if len(e.store.All()) != 0 {
				t.Fatal("the session is still stored")
			}
		})
	}
	// Without exp, a replay is still refused: jti is used once, and an old iat
	// is refused however the token is shaped.
	e := newEnv(t, nil)
	e.loggedIn(t)
	tok := e.idp.logoutToken(func(c map[string]any) { delete(c, "exp"); delete(c, "sub"); c["sid"] = "idp-sid-1" })
	if code := postLogoutToken(t, e, tok); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if code := postLogoutToken(t, e, tok); code != http.StatusBadRequest {
		t.Errorf("replayed token without exp: status %d, want 400", code)
	}
	e.loggedIn(t)
	old := e.idp.logoutToken(func(c map[string]any) {
		delete(c, "exp")
		c["iat"] = time.Now().Add(-time.Hour).Unix()
	})
	if code := postLogoutToken(t, e, old); code != http.StatusBadRequest {
		t.Errorf("old token without exp: status %d, want 400", code)
	}
}

// The operator learns once which claims the provider leaves out.
func TestBackchannelLogoutNotesOmittedClaimsOnce(t *testing.T) {
	var logs bytes.Buffer
	e := newEnv(t, func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	for range 3 {
		e.loggedIn(t)
		if code := postLogoutToken(t, e, e.idp.logoutToken(func(c map[string]any) { delete(c, "exp") })); code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
	}
	if n := strings.Count(logs.String(), "omit optional claims"); n != 1 {
		t.Fatalf("omitted claims logged %d times, want once:\n%s", n, logs.String())
	}
}

func TestBackchannelLogoutRevokesAllOfSubject(t *testing.T) {
	e := newEnv(t, nil)
	e.loggedIn(t)
	e.loggedIn(t)
	e.idp.set(func(p *testIdP) { p.sub = "user-2" })
	e.loggedIn(t)
	if code := postLogoutToken(t, e, e.idp.logoutToken(func(c map[string]any) { c["sub"] = "user-1" })); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if n := len(e.edge.revokedSIDs()); n != 2 {
		t.Fatalf("%d sessions revoked, want user-1's 2", n)
	}
	if l := e.store.All(); len(l) != 1 || l[0].Subject != "user-2" {
		t.Fatalf("remaining %v", l)
	}
	if _, ok := e.edge.users["user-1"]; !ok {
		t.Errorf("user-1 not revoked at the edge")
	}
	if e.metrics.revoked[KindBackchannel] != 2 {
		t.Errorf("revocations counted %v", e.metrics.revoked)
	}
}

func TestBackchannelLogoutBodyTooLarge(t *testing.T) {
	e := newEnv(t, nil)
	resp, err := http.Post(e.srv.URL+"/backchannel-logout", "application/x-www-form-urlencoded",
		strings.NewReader("logout_token="+strings.Repeat("a", 70<<10)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", resp.StatusCode)
	}
}

func TestBackchannelLogoutWrongMethod(t *testing.T) {
	e := newEnv(t, nil)
	resp := get(t, browser(t), e.srv.URL+"/backchannel-logout")
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: status %d, want 405", resp.StatusCode)
	}
}

func TestRefreshFailureRevokes(t *testing.T) {
	e := newEnv(t, nil)
	e.loggedIn(t)
	s := e.store.All()[0]
	e.idp.set(func(p *testIdP) { p.refreshFails = true })
	if err := e.h.RefreshOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := e.edge.revokedSIDs(); !slices.Equal(got, []string{s.ID}) {
		t.Fatalf("revoked %v, want %s", got, s.ID)
	}
	if len(e.store.All()) != 0 {
		t.Fatal("session kept after the IdP refused its refresh token")
	}
	if e.metrics.revoked[KindRefresh] != 1 {
		t.Errorf("refresh revocation not counted")
	}
}

func TestRefreshPublishesChangedGroups(t *testing.T) {
	e := newEnv(t, nil)
	e.loggedIn(t)
	old := e.store.All()[0]
	e.idp.set(func(p *testIdP) { p.refreshClaims = map[string]any{"groups": []any{"staff", "new-team"}} })
	if err := e.h.RefreshOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := e.edge.groups["user-1"]; !slices.Equal(got, []string{"staff", "new-team"}) {
		t.Fatalf("published groups %v", got)
	}
	s := e.store.All()[0]
	if s.RefreshToken == old.RefreshToken || s.RefreshedAt.IsZero() || !slices.Equal(s.Groups, []string{"staff", "new-team"}) {
		t.Fatalf("session not updated: %+v", s)
	}
	// Unchanged groups publish nothing; the rotated refresh token works.
	e.edge.groups = map[string][]string{}
	if err := e.h.RefreshOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(e.edge.groups) != 0 {
		t.Errorf("unchanged groups republished")
	}
	if e.idp.refreshCount != 2 || len(e.edge.revokedSIDs()) != 0 {
		t.Errorf("refreshes %d, revocations %v", e.idp.refreshCount, e.edge.revokedSIDs())
	}
}

func TestRefreshKeepsAdminOverride(t *testing.T) {
	ov := fakeOverrides{}
	e := newEnv(t, func(o *Options) { o.Groups = ov })
	e.loggedIn(t)
	ov["user-1"] = []string{"by-admin"}
	e.idp.set(func(p *testIdP) { p.refreshClaims = map[string]any{"groups": []any{"other"}} })
	if err := e.h.RefreshOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(e.edge.groups) != 0 {
		t.Fatalf("refresh overwrote the admin's groups: %v", e.edge.groups)
	}
}

func TestRefreshRevokesUserLeavingRequiredGroups(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.RequiredGroups = []string{"staff"} })
	e.loggedIn(t)
	e.idp.set(func(p *testIdP) { p.refreshClaims = map[string]any{"groups": []any{"alumni"}} })
	if err := e.h.RefreshOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(e.edge.revokedSIDs()) != 1 || len(e.store.All()) != 0 {
		t.Fatal("session kept for a user no longer in a required group")
	}
}

func TestRefreshSkipsRecentlyRefreshed(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.RefreshInterval = time.Hour })
	e.loggedIn(t)
	if err := e.h.RefreshOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e.idp.refreshCount != 0 {
		t.Fatalf("a session issued just now was refreshed")
	}
	e.h.now = func() time.Time { return time.Now().Add(31 * time.Minute) }
	if err := e.h.RefreshOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e.idp.refreshCount != 1 {
		t.Fatalf("due session not refreshed: %d", e.idp.refreshCount)
	}
}

func TestRefreshTransientErrorKeepsSession(t *testing.T) {
	e := newEnv(t, nil)
	e.loggedIn(t)
	e.idp.set(func(p *testIdP) { p.secret = "rotated" }) // invalid_client, not invalid_grant
	if err := e.h.RefreshOnce(context.Background()); err == nil {
		t.Fatal("want an error")
	}
	if len(e.store.All()) != 1 || len(e.edge.revokedSIDs()) != 0 {
		t.Fatal("a non-invalid_grant failure revoked the session")
	}
}

// replica is a second daemon replica sharing e's store, edge and IdP.
func (e *env) replica(t *testing.T) *Handler {
	t.Helper()
	h, err := New(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	h.idp.retryAfter = 0
	return h
}

// Two replicas refreshing at once must spend a rotating refresh token once:
// an IdP that sees it twice refuses the second use (reuse detection), which
// would revoke a perfectly good session.
func TestRefreshByTwoReplicasSpendsTheTokenOnce(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.RefreshInterval = time.Hour })
	e.loggedIn(t)
	later := func() time.Time { return time.Now().Add(time.Hour) }
	a, b := e.h, e.replica(t)
	a.now, b.now = later, later
	e.idp.set(func(p *testIdP) { p.refreshHold = newBarrier(2, 500*time.Millisecond) })

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, h := range []*Handler{a, b} {
		wg.Go(func() { errs[i] = h.RefreshOnce(context.Background()) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if got := e.idp.refreshCount; got != 1 {
		t.Errorf("refresh token sent to the IdP %d times, want 1", got)
	}
	if len(e.edge.revokedSIDs()) != 0 || e.store.Len() != 1 {
		t.Fatalf("session revoked by a refresh race: revoked %v, %d stored", e.edge.revokedSIDs(), e.store.Len())
	}
	// The stored refresh token is the rotated one: the next refresh works.
	next := func() time.Time { return time.Now().Add(3 * time.Hour) }
	a.now = next
	if err := a.RefreshOnce(context.Background()); err != nil || len(e.edge.revokedSIDs()) != 0 {
		t.Fatalf("next refresh: %v, revoked %v", err, e.edge.revokedSIDs())
	}
}

// A session signed out on another replica while this one refreshed it must
// stay deleted.
func TestRefreshDoesNotResurrectSignedOutSession(t *testing.T) {
	e := newEnv(t, nil)
	e.loggedIn(t)
	sid := e.store.All()[0].ID
	updates := 0
	e.store.BeforeUpdate = func(*session.Session) {
		if updates++; updates == 2 { // the write of the refresh result
			_ = e.store.Delete(context.Background(), sid)
		}
	}
	if err := e.h.RefreshOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e.store.Has(sid) {
		t.Fatal("refresh wrote back a session deleted meanwhile")
	}
}

// A change made by another replica during a refresh is kept, and so is the
// rotated refresh token.
func TestRefreshMergesConcurrentChange(t *testing.T) {
	e := newEnv(t, nil)
	e.loggedIn(t)
	sid := e.store.All()[0].ID
	updates := 0
	e.store.BeforeUpdate = func(*session.Session) {
		if updates++; updates == 2 {
			s, _, _ := e.store.Get(context.Background(), sid)
			s.Name = "changed elsewhere"
			_ = e.store.Put(context.Background(), s)
		}
	}
	before := e.store.All()[0].RefreshToken
	if err := e.h.RefreshOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := e.store.All()[0]
	if s.Name != "changed elsewhere" || s.RefreshToken == before || s.RefreshToken == "" {
		t.Fatalf("after refresh: name %q, refresh token rotated %v", s.Name, s.RefreshToken != before)
	}
}

// confirmForm is the sign-out confirmation page's form: its hidden fields.
var confirmFieldRe = regexp.MustCompile(`<input type="hidden" name="(csrf|rd)" value="([^"]*)"`)

// confirmation GETs /logout?rd= and returns the form's hidden fields; the
// page must be a sign-out confirmation with a POST form.
func (e *env) confirmation(t *testing.T, c *http.Client, rd string) url.Values {
	t.Helper()
	u := e.srv.URL + "/logout"
	if rd != "" {
		u += "?rd=" + url.QueryEscape(rd)
	}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `<form id="signout" method="post" action="logout">`) {
		t.Fatalf("GET /logout: status %d, want 200 and a confirmation form; body %.300s", resp.StatusCode, body)
	}
	v := url.Values{}
	for _, m := range confirmFieldRe.FindAllStringSubmatch(string(body), -1) {
		v.Set(m[1], html.UnescapeString(m[2]))
	}
	return v
}

// postLogout sends POST /logout with form fields and headers (cookies from c's jar).
func (e *env) postLogout(t *testing.T, c *http.Client, form url.Values, hdr map[string]string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", e.srv.URL+"/logout", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return send(t, c, req)
}

// signOut does what a browser does on /logout?rd=: show the confirmation
// page, then post its form from the daemon's own origin.
func (e *env) signOut(t *testing.T, c *http.Client, rd string) *http.Response {
	t.Helper()
	return e.postLogout(t, c, e.confirmation(t, c, rd), map[string]string{"Origin": e.srv.URL, "Sec-Fetch-Site": "same-origin"})
}

// Attack: a cross-site link, image, redirect or auto-submitted form makes the
// victim's browser request /logout and ends their session at every edge.
func TestCrossSiteLogoutDoesNotEndSession(t *testing.T) {
	cases := map[string]struct {
		method string
		hdr    map[string]string
		// token: "" none, "own" the victim's (from its confirmation page),
		// "other" another session's, "forged" a made-up one.
		token string
	}{
		"top-level GET from another site":       {"GET", map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}, ""},
		"GET without fetch metadata":            {"GET", nil, ""},
		"form POST from another origin":         {"POST", map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, ""},
		"form POST from another origin w/token": {"POST", map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, "own"},
		"POST with Origin null":                 {"POST", map[string]string{"Origin": "null"}, "own"},
		"POST without Origin or fetch metadata": {"POST", nil, "own"},
		"POST from a sibling subdomain":         {"POST", map[string]string{"Origin": "https://evil.example.org", "Sec-Fetch-Site": "same-site"}, "own"},
		"same-origin POST without a token":      {"POST", map[string]string{"Origin": "SELF", "Sec-Fetch-Site": "same-origin"}, ""},
		"same-origin POST with a forged token":  {"POST", map[string]string{"Origin": "SELF"}, "forged"},
		"same-origin POST, another's token":     {"POST", map[string]string{"Sec-Fetch-Site": "same-origin"}, "other"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, nil)
			other, _ := e.loggedIn(t)
			victim, _ := e.loggedIn(t)
			form := url.Values{"rd": {"https://app.example.com/"}}
			switch c.token {
			case "own":
				form.Set("csrf", e.confirmation(t, victim, "").Get("csrf"))
			case "other":
				form.Set("csrf", e.confirmation(t, other, "").Get("csrf"))
			case "forged":
				form.Set("csrf", "es1.0000.AAAA")
			}
			hdr := map[string]string{}
			for k, v := range c.hdr {
				hdr[k] = strings.ReplaceAll(v, "SELF", e.srv.URL)
			}
			var resp *http.Response
			if c.method == "GET" {
				req, _ := http.NewRequest("GET", e.srv.URL+"/logout?rd="+url.QueryEscape("https://app.example.com/"), nil)
				for k, v := range hdr {
					req.Header.Set(k, v)
				}
				var err error
				if resp, err = victim.Do(req); err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
			} else {
				resp = e.postLogout(t, victim, form, hdr)
			}
			if n := len(e.edge.revokedSIDs()); n != 0 || e.store.Len() != 2 {
				t.Fatalf("status %d: %d sessions revoked at the edge, %d of 2 still stored; want none revoked", resp.StatusCode, n, e.store.Len())
			}
			for _, ck := range resp.Cookies() {
				if strings.Contains(ck.Name, DefaultCookieName) && ck.MaxAge < 0 {
					t.Errorf("the response deletes cookie %s", ck.Name)
				}
			}
			if loc := resp.Header.Get("Location"); strings.HasPrefix(loc, e.idp.issuer()) {
				t.Errorf("the response sends the browser to the IdP's end_session: %s", loc)
			}
		})
	}
}

// The confirmation page changes nothing, cannot be framed or cached, runs
// no script, and lets its form (and the redirects after it) reach only the
// daemon, the IdP and the return URL.
func TestLogoutConfirmationPage(t *testing.T) {
	e := newEnv(t, nil)
	c, _ := e.loggedIn(t)
	resp, err := c.Get(e.srv.URL + "/logout?rd=" + url.QueryEscape("https://wiki.example.org/x"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(e.edge.revokedSIDs()) != 0 || e.store.Len() != 1 || len(resp.Cookies()) != 0 {
		t.Fatalf("GET /logout: status %d, revoked %v, cookies %v; want a page that changes nothing", resp.StatusCode, e.edge.revokedSIDs(), resp.Cookies())
	}
	hd := resp.Header
	csp := hd.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "frame-ancestors 'none'", "form-action 'self' " + e.srv.URL + " " + e.idp.issuer() + " https://wiki.example.org"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if hd.Get("X-Frame-Options") != "DENY" || hd.Get("Cache-Control") != "no-store" || hd.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("headers %v", hd)
	}
	for _, want := range []string{`<form id="signout" method="post" action="logout">`, `name="csrf"`, `name="rd" value="https://wiki.example.org/x"`, `<button type="submit">Sign out</button>`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(strings.ToLower(string(body)), "<script") || strings.Contains(string(body), "javascript:") {
		t.Errorf("page has a script:\n%s", body)
	}
	// A refused POST shows the form again (403), so the user can still sign out.
	form := url.Values{"csrf": {"es1.x.y"}}
	r := e.postLogout(t, c, form, map[string]string{"Origin": e.srv.URL})
	if r.StatusCode != http.StatusForbidden || e.store.Len() != 1 {
		t.Fatalf("refused POST: status %d, %d stored", r.StatusCode, e.store.Len())
	}
	if resp := e.signOut(t, c, ""); resp.StatusCode != http.StatusFound || e.store.Len() != 0 {
		t.Fatalf("sign-out after a refusal: status %d, %d stored", resp.StatusCode, e.store.Len())
	}
}

// Replicas share the sealing key: a form shown by one is accepted by another.
func TestLogoutFormWorksAcrossReplicas(t *testing.T) {
	key, _, err := seal.Generate()
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(o *Options) { o.Seal = key })
	mux := http.NewServeMux()
	e.replica(t).Register(mux)
	other := httptest.NewServer(mux)
	defer other.Close()
	c, _ := e.loggedIn(t)
	form := e.confirmation(t, c, "")
	u, _ := url.Parse(e.srv.URL)
	req, _ := http.NewRequest("POST", other.URL+"/logout", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", e.srv.URL) // both serve the same publicURL
	for _, ck := range c.Jar.Cookies(u) {
		req.AddCookie(ck)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || e.store.Len() != 0 {
		t.Fatalf("POST to the other replica: status %d, %d stored; want the session ended", resp.StatusCode, e.store.Len())
	}
}
