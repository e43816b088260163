package oidcflow

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/internal/sessiontest"
)

// fakes are the fakes of the core a test handler runs on.
type fakes struct {
	store   *sessiontest.Store
	edge    *fakeEdge
	metrics *fakeMetrics
}

func newFakes() fakes {
	return fakes{store: sessiontest.New(), edge: newFakeEdge(), metrics: newFakeMetrics()}
}

// handler wires o to the fakes (and fakeSigner), lets mod change it, and
// makes the Handler.
func (f fakes) handler(t *testing.T, o Options, mod func(o *Options)) (*Handler, Options) {
	t.Helper()
	o.Store, o.Signer, o.Tokens, o.Edge, o.Metrics = f.store, fakeSigner{}, fakeSigner{}, f.edge, f.metrics
	if mod != nil {
		mod(&o)
	}
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return h, o
}

// env is a daemon (the handler on an httptest server) wired to a testIdP
// and fakes of the core.
type env struct {
	fakes
	idp  *testIdP
	h    *Handler
	srv  *httptest.Server
	opts Options
	// mux serves the handler's endpoints, for requests made without a
	// network round trip (floods, chosen remote addresses).
	mux *http.ServeMux
}

func newEnv(t *testing.T, mod func(o *Options)) *env {
	t.Helper()
	e := &env{fakes: newFakes(), idp: newTestIdP(t)}
	mux := http.NewServeMux()
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	h, o := e.handler(t, Options{
		PublicURL:       e.srv.URL,
		Issuer:          e.idp.issuer(),
		ClientID:        "edgepass",
		ClientSecret:    "s3cret",
		Scopes:          []string{"openid", "profile", "email", "offline_access"},
		Lifetime:        2 * time.Hour,
		CookieDomain:    "",
		AllowedDomains:  []string{"127.0.0.1", "app.example.com", "*.example.org"},
		DefaultRedirect: "https://app.example.com/",
	}, mod)
	h.idp.retryAfter = 0
	h.Register(mux)
	e.h, e.opts, e.mux = h, o, mux
	return e
}

// browser is an HTTP client with cookies that does not follow redirects.
func browser(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, c *http.Client, u string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return send(t, c, req)
}

// send makes the request and returns the response, its body read and closed.
func send(t *testing.T, c *http.Client, req *http.Request) *http.Response {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// startLogin runs /login and the IdP's /authorize and returns the callback
// URL the IdP sent the browser to.
func (e *env) startLogin(t *testing.T, c *http.Client, rd string) string {
	t.Helper()
	u := e.srv.URL + "/login"
	if rd != "" {
		u += "?rd=" + url.QueryEscape(rd)
	}
	resp := get(t, c, u)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("/login: status %d, want 302", resp.StatusCode)
	}
	auth := resp.Header.Get("Location")
	if !strings.HasPrefix(auth, e.idp.issuer()+"/authorize?") {
		t.Fatalf("/login redirected to %q, want the IdP's authorize endpoint", auth)
	}
	resp = get(t, c, auth)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("/authorize: status %d", resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

// login runs the whole flow and returns the callback's response.
func (e *env) login(t *testing.T, c *http.Client, rd string) *http.Response {
	t.Helper()
	return get(t, c, e.startLogin(t, c, rd))
}

// keptCookie is the session cookie resp sets, which a browser must be able
// to keep: name=value within the 4096 bytes browsers store.
func keptCookie(t *testing.T, resp *http.Response) *http.Cookie {
	t.Helper()
	ck := sessionCookie(resp, DefaultCookieName)
	if ck == nil {
		t.Fatalf("no session cookie; status %d", resp.StatusCode)
	}
	if n := len(ck.Name) + 1 + len(ck.Value); n > 4096 {
		t.Fatalf("cookie name=value is %d bytes, over 4096", n)
	}
	return ck
}

func sessionCookie(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func TestLoginCallbackSetsCookie(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.CookieDomain = "example.org"; o.CookieSecure = true })
	c := browser(t)
	resp := e.login(t, c, "https://wiki.example.org/page?x=1")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "https://wiki.example.org/page?x=1" {
		t.Fatalf("callback: %d to %q, want 302 to the return URL", resp.StatusCode, resp.Header.Get("Location"))
	}
	ck := sessionCookie(resp, DefaultCookieName)
	if ck == nil {
		t.Fatal("no session cookie set")
	}
	if !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteLaxMode || ck.Domain != "example.org" || ck.Path != "/" || ck.MaxAge != 7200 {
		t.Errorf("cookie attributes: %+v", ck)
	}
	sessions := e.store.All()
	if len(sessions) != 1 {
		t.Fatalf("%d sessions stored, want 1", len(sessions))
	}
	s := sessions[0]
	fc, err := decodeFake(ck.Value)
	if err != nil || fc.Sid != s.ID || fc.Sub != "user-1" {
		t.Fatalf("cookie token %+v (err %v) does not name session %s", fc, err, s.ID)
	}
	if len(s.ID) != 43 {
		t.Errorf("session id %q: want 32 random bytes in base64url (43 chars)", s.ID)
	}
	if s.Username != "alice" || s.Email != "alice@example.com" || s.Name != "Alice" || !slices.Equal(s.Groups, []string{"staff", "admins"}) {
		t.Errorf("identity: %+v", s)
	}
	if s.RefreshToken == "" || s.IDToken == "" || s.IdPSessionID != "idp-sid-1" {
		t.Errorf("session lacks refresh token, ID token or IdP sid: %+v", s)
	}
	if got := s.ExpiresAt.Sub(s.IssuedAt); got != 2*time.Hour {
		t.Errorf("lifetime %v, want 2h", got)
	}
	q := e.idp.authorizeQuery
	if q.Get("nonce") == "" || q.Get("code_challenge_method") != "S256" || q.Get("redirect_uri") != e.srv.URL+"/callback" ||
		!strings.Contains(q.Get("scope"), "offline_access") {
		t.Errorf("authorize request: %v", q)
	}
	if e.metrics.logins != 1 {
		t.Errorf("logins metric %d, want 1", e.metrics.logins)
	}
}

func TestLoginWithoutReturnURLGoesToDefault(t *testing.T) {
	e := newEnv(t, nil)
	resp := e.login(t, browser(t), "")
	if resp.Header.Get("Location") != "https://app.example.com/" {
		t.Fatalf("redirected to %q, want the default redirect", resp.Header.Get("Location"))
	}
}

func TestLoginFetchesMissingClaimsFromUserinfo(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.GroupsClaim = "roles" })
	e.idp.set(func(p *testIdP) {
		p.idClaims = map[string]any{"sid": "s"}
		p.userinfo = map[string]any{"roles": []any{"dev", 7, "", "dev", "ops"}, "email": "bob@example.com", "preferred_username": "bob"}
	})
	if resp := e.login(t, browser(t), ""); resp.StatusCode != http.StatusFound {
		t.Fatalf("callback status %d", resp.StatusCode)
	}
	s := e.store.All()[0]
	if s.Username != "bob" || s.Email != "bob@example.com" || !slices.Equal(s.Groups, []string{"dev", "ops"}) {
		t.Fatalf("claims from userinfo not used: %+v", s)
	}
}

// An IdP (or a MITM on userinfo) answering for another user must not mix identities.
func TestCallbackRejectsUserinfoForAnotherSubject(t *testing.T) {
	e := newEnv(t, nil)
	e.idp.set(func(p *testIdP) {
		p.idClaims = map[string]any{}
		p.userinfo = map[string]any{"sub": "someone-else"}
	})
	resp := e.login(t, browser(t), "")
	if resp.StatusCode != http.StatusBadGateway || len(e.store.All()) != 0 {
		t.Fatalf("status %d, %d sessions; want 502 and none", resp.StatusCode, len(e.store.All()))
	}
}

func TestNestedClaimPath(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.GroupsClaim = "realm_access.roles" })
	e.idp.set(func(p *testIdP) {
		p.idClaims["realm_access"] = map[string]any{"roles": []any{"r1", "r2"}}
	})
	e.login(t, browser(t), "")
	if s := e.store.All()[0]; !slices.Equal(s.Groups, []string{"r1", "r2"}) {
		t.Fatalf("groups %v, want the nested claim", s.Groups)
	}
}

// Attack: a callback with a state the daemon never issued (CSRF / injected code).
func TestCallbackRejectsForgedState(t *testing.T) {
	e := newEnv(t, nil)
	c := browser(t)
	cb := e.startLogin(t, c, "")
	u, _ := url.Parse(cb)
	q := u.Query()
	q.Set("state", rand.Text())
	u.RawQuery = q.Encode()
	resp := get(t, c, u.String())
	if resp.StatusCode != http.StatusBadRequest || sessionCookie(resp, DefaultCookieName) != nil || len(e.store.All()) != 0 {
		t.Fatalf("forged state: status %d, sessions %d; want 400 and no session", resp.StatusCode, len(e.store.All()))
	}
	if e.metrics.failure(ReasonState) != 1 {
		t.Errorf("state failure not counted: %v", e.metrics.failures)
	}
}

// Attack: replaying a captured callback URL (code + state) a second time,
// even against an IdP that would accept the code twice.
func TestCallbackRejectsReplayedState(t *testing.T) {
	e := newEnv(t, nil)
	e.idp.set(func(p *testIdP) { p.reusableCodes = true })
	c := browser(t)
	cb := e.startLogin(t, c, "")
	if resp := get(t, c, cb); resp.StatusCode != http.StatusFound {
		t.Fatalf("first callback: %d", resp.StatusCode)
	}
	resp := get(t, c, cb)
	if resp.StatusCode != http.StatusBadRequest || sessionCookie(resp, DefaultCookieName) != nil {
		t.Fatalf("replayed callback: status %d, want 400 without cookie", resp.StatusCode)
	}
	if n := len(e.store.All()); n != 1 {
		t.Fatalf("%d sessions, want 1", n)
	}
}

// Attack: login CSRF — the attacker signs in, then makes the victim's browser
// open the attacker's callback URL so the victim works in the attacker's account.
func TestCallbackRejectsStateFromAnotherBrowser(t *testing.T) {
	e := newEnv(t, nil)
	attackerCallback := e.startLogin(t, browser(t), "")
	fresh := browser(t) // no login cookie at all
	if resp := get(t, fresh, attackerCallback); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("browser without a login cookie: status %d, want 400", resp.StatusCode)
	}
	attackerCallback = e.startLogin(t, browser(t), "")
	victim := browser(t)
	e.startLogin(t, victim, "") // the victim has a login cookie of its own
	if resp := get(t, victim, attackerCallback); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("browser with another login cookie: status %d, want 400", resp.StatusCode)
	}
	if n := len(e.store.All()); n != 0 {
		t.Fatalf("%d sessions created, want none", n)
	}
}

// Attack: an ID token minted for another login (nonce mismatch, replayed token).
func TestCallbackRejectsWrongNonce(t *testing.T) {
	e := newEnv(t, nil)
	wrong := "not-the-nonce"
	e.idp.set(func(p *testIdP) { p.nonceOverride = &wrong })
	resp := e.login(t, browser(t), "")
	if resp.StatusCode != http.StatusBadRequest || len(e.store.All()) != 0 {
		t.Fatalf("status %d, %d sessions; want 400 and none", resp.StatusCode, len(e.store.All()))
	}
	if e.metrics.failure(ReasonNonce) != 1 {
		t.Errorf("nonce failure not counted: %v", e.metrics.failures)
	}
}

// Attack: an ID token that is not from our IdP, not for our client, or not signed by it.
func TestCallbackRejectsIDTokenFromOtherIssuer(t *testing.T) {
	other := otherKey(t)
	cases := map[string]func(p *testIdP){
		"other issuer":   func(p *testIdP) { p.tokenIssuer = "https://evil.example.net" },
		"other audience": func(p *testIdP) { p.tokenAudience = "another-client" },
		"other key":      func(p *testIdP) { p.signWith = other },
		// an access token swapped in the token response (at_hash mismatch)
		"access token swapped": func(p *testIdP) { p.idClaims["at_hash"] = "AAAAAAAAAAAAAAAAAAAAAA" },
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.idp.set(mod)
			resp := e.login(t, browser(t), "")
			if resp.StatusCode != http.StatusBadRequest || len(e.store.All()) != 0 || sessionCookie(resp, DefaultCookieName) != nil {
				t.Fatalf("status %d, %d sessions; want 400 and none", resp.StatusCode, len(e.store.All()))
			}
			if e.metrics.failure(ReasonIDToken) != 1 {
				t.Errorf("id_token failure not counted: %v", e.metrics.failures)
			}
		})
	}
}

func TestCallbackIdPErrorRefused(t *testing.T) {
	e := newEnv(t, nil)
	c := browser(t)
	cb, _ := url.Parse(e.startLogin(t, c, ""))
	q := cb.Query()
	q.Del("code")
	q.Set("error", "access_denied")
	q.Set("error_description", "<script>alert(1)</script>")
	cb.RawQuery = q.Encode()
	resp, err := c.Get(cb.String())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || strings.Contains(string(body), "<script>") {
		t.Fatalf("status %d, body %q", resp.StatusCode, body)
	}
}

// Attack: using /login?rd= as an open redirect to a phishing site.
func TestLoginRejectsOpenRedirect(t *testing.T) {
	evil := []string{
		"https://evil.com/",
		"//evil.com/",
		"/\\evil.com",
		"https:evil.com",
		"https:/evil.com",
		"https:///evil.com",
		"javascript:alert(1)",
		"JavaScript://app.example.com/%0aalert(1)",
		"data:text/html,hi",
		"ftp://app.example.com/",
		"https://app.example.com@evil.com/",
		"https://evil.com#@app.example.com",
		"https://evil.com?@app.example.com",
		"https://evil.com\\@app.example.com",
		"https://app.example.com\\.evil.com/",
		"https://app.example.com.evil.com/",
		"https://evilapp.example.com/",
		"https://example.org/",           // the wildcard is for subdomains only
		"https://evil.com/.example.org/", // suffix in the path
		"https://app.example.com%2eevil.com/",
		"https://%61pp.example.com/",
		"https://app.example.com\t/",
		"https://app.example.com\n.evil.com/",
		"https://app.example.com\x00.evil.com/",
		" https://app.example.com/",
		"https://app.example.com./",
		"https://a.example.org./",
		"https://app.example.com:99999/",
		"https://app.example.com:/",
		"https://user:pw@app.example.com/",
		"https://[::1]/",
		"https://xn--pp-5ja.example.com/",
		"https://аpp.example.com/", // Cyrillic а
		"/relative/path",
		"app.example.com",
	}
	e := newEnv(t, nil)
	for _, rd := range evil {
		// The login goes on, but it lands on the default page, never on rd.
		resp := e.login(t, browser(t), rd)
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || loc != "https://app.example.com/" {
			t.Errorf("rd %q: callback answered %d to %q; want 302 to the default page", rd, resp.StatusCode, loc)
		}
	}
	good := []string{"https://app.example.com/x", "HTTPS://APP.example.com/", "http://127.0.0.1:8080/a?b=c#d", "https://deep.sub.example.org/"}
	for _, rd := range good {
		resp := get(t, browser(t), e.srv.URL+"/login?rd="+url.QueryEscape(rd))
		if resp.StatusCode != http.StatusFound {
			t.Errorf("rd %q: status %d; want 302 to the IdP", rd, resp.StatusCode)
		}
	}
}

func TestRequiredGroupRefused(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.RequiredGroups = []string{"wiki-users", "ops"} })
	resp := e.login(t, browser(t), "")
	if resp.StatusCode != http.StatusForbidden || sessionCookie(resp, DefaultCookieName) != nil || len(e.store.All()) != 0 {
		t.Fatalf("status %d, %d sessions; want 403 and none", resp.StatusCode, len(e.store.All()))
	}
	if e.metrics.failure(ReasonForbidden) != 1 {
		t.Errorf("forbidden failure not counted: %v", e.metrics.failures)
	}
	e.idp.set(func(p *testIdP) { p.idClaims["groups"] = []any{"ops"} })
	if resp := e.login(t, browser(t), ""); resp.StatusCode != http.StatusFound {
		t.Fatalf("member of a required group: status %d, want 302", resp.StatusCode)
	}
}

func TestGroupOverrideAppliedAtLogin(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Groups = fakeOverrides{"user-1": {"set-by-admin"}} })
	resp := e.login(t, browser(t), "")
	fc, err := decodeFake(sessionCookie(resp, DefaultCookieName).Value)
	if err != nil || !slices.Equal(fc.Groups, []string{"set-by-admin"}) {
		t.Fatalf("token groups %v (err %v), want the admin override", fc, err)
	}
	if len(e.edge.groups) != 0 {
		t.Errorf("login published %v over the admin override", e.edge.groups)
	}
}

func TestGroupsFilteredToFitCookie(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.RequiredGroups = []string{"needed"} })
	var groups []any
	for i := 0; i < 200; i++ {
		groups = append(groups, strings.Repeat("g", 40)+string(rune('a'+i%26))+strings.Repeat("x", i%7)+"-"+time.Duration(i).String())
	}
	groups = append(groups, "needed")
	e.idp.set(func(p *testIdP) { p.idClaims["groups"] = groups })
	ck := keptCookie(t, e.login(t, browser(t), ""))
	fc, _ := decodeFake(ck.Value)
	if len(fc.Groups) == 0 || len(fc.Groups) >= len(groups) || fc.Groups[0] != "needed" {
		t.Fatalf("token carries %d of %d groups, first %q; want a filtered list starting with the required group",
			len(fc.Groups), len(groups), fc.Groups[0])
	}
	// One more group would not have fitted.
	s := e.store.All()[0]
	more := s
	more.Groups = e.h.prioritize(s.Groups)[:len(fc.Groups)+1]
	if tok, err := (fakeSigner{}).Sign(&more); err == nil && len(tok) <= e.h.maxToken {
		t.Errorf("dropped more groups than needed")
	}
	if len(s.Groups) != len(groups) {
		t.Errorf("session keeps %d groups, want all %d", len(s.Groups), len(groups))
	}
	// Nothing is dropped silently: every edge gets the whole list as a groups fact.
	if got := e.edge.groups["user-1"]; len(got) != len(groups) {
		t.Errorf("published %d groups for the edges, want all %d", len(got), len(groups))
	}
}

func TestDiscoveryDownAtStartIsRetried(t *testing.T) {
	e := newEnv(t, nil)
	e.idp.set(func(p *testIdP) { p.down = true })
	resp := get(t, browser(t), e.srv.URL+"/login")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("IdP down: status %d, want 502", resp.StatusCode)
	}
	err := e.h.Ping(context.Background())
	if err == nil || !strings.Contains(err.Error(), "IdP discovery at "+e.idp.issuer()+"/.well-known/openid-configuration failed") ||
		!strings.Contains(err.Error(), "check --oidc.issuer") {
		t.Fatalf("Ping error %v: want a message naming the discovery URL and the flag", err)
	}
	e.idp.set(func(p *testIdP) { p.down = false })
	if resp := e.login(t, browser(t), ""); resp.StatusCode != http.StatusFound {
		t.Fatalf("after the IdP came back: status %d, want 302", resp.StatusCode)
	}
	if err := e.h.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestSessionStoreFailureIsGeneric(t *testing.T) {
	e := newEnv(t, nil)
	e.store.Fail = errors.New("store down")
	c := browser(t)
	resp, err := c.Get(e.startLogin(t, c, ""))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError || strings.Contains(string(body), "store down") || sessionCookie(resp, DefaultCookieName) != nil {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
}

// Pending logins live in the browser, at most PendingLogins of them: the
// oldest one's cookie is dropped when another login starts, so the cookies
// a browser sends stay bounded.
func TestPendingLoginsBounded(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.PendingLogins = 3 })
	c := browser(t)
	first := e.startLogin(t, c, "")
	var rest []string
	for i := 0; i < 3; i++ {
		rest = append(rest, e.startLogin(t, c, ""))
	}
	if n := len(e.stateCookies(t, c)); n != 3 {
		t.Fatalf("browser holds %d pending logins, want the bound 3", n)
	}
	if resp := get(t, c, first); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("dropped login: status %d, want 400", resp.StatusCode)
	}
	for i, cb := range rest {
		if resp := get(t, c, cb); resp.StatusCode != http.StatusFound {
			t.Fatalf("login %d within the bound: status %d, want 302", i+1, resp.StatusCode)
		}
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	base := func() Options {
		return Options{PublicURL: "https://auth.example.com", Issuer: "https://idp.example.com", ClientID: "c",
			Store: sessiontest.New(), Signer: fakeSigner{}, Tokens: fakeSigner{}, Edge: newFakeEdge()}
	}
	if _, err := New(base()); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	cases := map[string]func(o *Options){
		"no issuer":        func(o *Options) { o.Issuer = "" },
		"relative issuer":  func(o *Options) { o.Issuer = "idp.example.com" },
		"no client":        func(o *Options) { o.ClientID = "" },
		"no store":         func(o *Options) { o.Store = nil },
		"bad public url":   func(o *Options) { o.PublicURL = "ftp://x" },
		"bad domain":       func(o *Options) { o.AllowedDomains = []string{"https://example.com"} },
		"bare wildcard":    func(o *Options) { o.AllowedDomains = []string{"*"} },
		"bad cookie name":  func(o *Options) { o.CookieName = "a b" },
		"bad default":      func(o *Options) { o.DefaultRedirect = "/home" },
		"negative refresh": func(o *Options) { o.RefreshInterval = -1 },
	}
	for name, mod := range cases {
		o := base()
		mod(&o)
		if _, err := New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// Attack: an account at the IdP claiming someone else's address without
// proving it (email_verified false) must not carry that address to the edge,
// where allowedEmailDomains would admit it.
func TestUnverifiedEmailIsNotPassedOn(t *testing.T) {
	for _, verified := range []any{false, "false"} {
		e := newEnv(t, nil)
		e.idp.set(func(p *testIdP) {
			p.idClaims["email"] = "ceo@example.com"
			p.idClaims["email_verified"] = verified
			p.userinfo = map[string]any{"email": "ceo@example.com"}
		})
		resp := e.login(t, browser(t), "")
		if sessionCookie(resp, DefaultCookieName) == nil {
			t.Fatalf("email_verified %v: no session cookie (status %d)", verified, resp.StatusCode)
		}
		if s := e.store.All()[0]; s.Email != "" {
			t.Errorf("email_verified %v: session carries unverified email %q", verified, s.Email)
		}
	}
	e := newEnv(t, nil)
	e.idp.set(func(p *testIdP) { p.idClaims["email_verified"] = true })
	e.login(t, browser(t), "")
	if s := e.store.All()[0]; s.Email != "alice@example.com" {
		t.Errorf("verified email dropped: %q", s.Email)
	}
}

// Attack: guessing the state or nonce of someone else's login. Each login
// gets fresh values from crypto/rand (rand.Text: 26 characters, 130 bits).
func TestLoginStateAndNonceAreFreshAndUnguessable(t *testing.T) {
	e := newEnv(t, nil)
	seen := map[string]bool{}
	for range 3 {
		e.startLogin(t, browser(t), "")
		e.idp.mu.Lock()
		q := e.idp.authorizeQuery
		e.idp.mu.Unlock()
		for _, k := range []string{"state", "nonce"} {
			v := q.Get(k)
			if len(v) < 26 || seen[v] {
				t.Fatalf("%s %q: want a fresh value of at least 26 characters", k, v)
			}
			seen[v] = true
		}
	}
}

// A user without preferred_username is named by their email, else their sub,
// as the edges name them; an unverified email never names anyone.
func TestUsernameFallsBackToEmailThenSubject(t *testing.T) {
	cases := map[string]struct {
		claims map[string]any
		want   string
	}{
		"username":         {map[string]any{"preferred_username": "alice", "email": "alice@example.com"}, "alice"},
		"email":            {map[string]any{"email": "alice@example.com"}, "alice@example.com"},
		"subject":          {map[string]any{}, "user-1"},
		"unverified email": {map[string]any{"email": "ceo@example.com", "email_verified": false}, "user-1"},
	}
	for name, c := range cases {
		e := newEnv(t, nil)
		e.idp.set(func(p *testIdP) { p.idClaims = c.claims })
		e.login(t, browser(t), "")
		if all := e.store.All(); len(all) != 1 || all[0].Username != c.want {
			t.Errorf("%s: sessions %+v, want username %q", name, all, c.want)
		}
	}
}

// Misleading health: after one successful discovery Ping said the IdP was
// fine forever. It reports the IdP's state now; Discovered stays true.
func TestPingReportsTheIdPNowAfterDiscovery(t *testing.T) {
	e := newEnv(t, nil)
	if e.h.Discovered() {
		t.Fatal("Discovered before any discovery")
	}
	if err := e.h.Ping(context.Background()); err != nil || !e.h.Discovered() {
		t.Fatalf("IdP up: Ping %v, Discovered %v", err, e.h.Discovered())
	}
	e.idp.set(func(p *testIdP) { p.down = true })
	err := e.h.Ping(context.Background())
	if err == nil || !strings.Contains(err.Error(), "does not answer now") || !e.h.Discovered() {
		t.Fatalf("IdP down after discovery: Ping %v, Discovered %v; want an error and still discovered", err, e.h.Discovered())
	}
	e.idp.set(func(p *testIdP) { p.down = false })
	if err := e.h.Ping(context.Background()); err != nil {
		t.Fatalf("IdP back: %v", err)
	}
}
