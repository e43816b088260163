package console

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/admin"
	"github.com/edgepass/edgepass/daemon/edgepub"
	"github.com/edgepass/edgepass/daemon/events"
	"github.com/edgepass/edgepass/daemon/internal/servicetokentest"
	"github.com/edgepass/edgepass/daemon/internal/sessiontest"
	"github.com/edgepass/edgepass/daemon/internal/syncbuf"
	"github.com/edgepass/edgepass/daemon/keys"
	"github.com/edgepass/edgepass/daemon/oidcflow"
	"github.com/edgepass/edgepass/daemon/seal"
	"github.com/edgepass/edgepass/daemon/session"
	"github.com/edgepass/edgepass/plugin/natsedge"
	"github.com/edgepass/edgepass/plugin/token"
)

// Secrets that must never reach a console page.
const (
	refreshSecret = "refresh-token-SECRET-value"
	idTokenSecret = "eyJ-id-token-SECRET-value"
	adminToken    = "admin-token-SECRET-0123456789"
)

var t0 = time.Now().Truncate(time.Second)

// fakeAuth is the IdP: it signs in whoever person is.
type fakeAuth struct {
	mu     sync.Mutex
	person oidcflow.Person
	n      int
}

func (a *fakeAuth) StartSignIn(_ context.Context, redirectURL string) (string, oidcflow.SignIn, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n++
	st := oidcflow.SignIn{State: "state-" + string(rune('a'+a.n)), Nonce: "n", Verifier: "v"}
	return "https://idp.test/authorize?redirect_uri=" + url.QueryEscape(redirectURL) + "&state=" + st.State, st, nil
}

func (a *fakeAuth) FinishSignIn(_ context.Context, _ string, q url.Values, st oidcflow.SignIn) (*oidcflow.Person, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if q.Get("state") != st.State {
		return nil, oidcflow.ErrSignInState
	}
	p := a.person
	return &p, nil
}

type fakeEdge struct {
	mu    sync.Mutex
	calls []string
}

func (e *fakeEdge) add(s string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls = append(e.calls, s)
	return nil
}
func (e *fakeEdge) RevokeSession(_ context.Context, sid string, _ time.Time) error {
	return e.add("session " + sid)
}
func (e *fakeEdge) RevokeUser(_ context.Context, sub string, _ time.Time) error {
	return e.add("user " + sub)
}
func (e *fakeEdge) SetGroups(_ context.Context, sub string, g []string) error {
	return e.add("groups " + sub + " " + strings.Join(g, ","))
}
func (e *fakeEdge) ClearGroups(_ context.Context, sub string) error { return e.add("clear " + sub) }
func (e *fakeEdge) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.calls)
}

type fakeKeys struct{ rotated int }

func (k *fakeKeys) Rotate(context.Context) (string, error) { k.rotated++; return "kidNEW", nil }
func (k *fakeKeys) Revoke(_ context.Context, kid string) (keys.RevokeResult, error) {
	return keys.RevokeResult{KeyID: kid}, nil
}
func (k *fakeKeys) Keys() []keys.KeyInfo {
	return []keys.KeyInfo{{ID: "kidA", State: "active", Created: t0}, {ID: "kidOLD", State: "retired", Created: t0}}
}
func (k *fakeKeys) KeyID() string          { return "kidA" }
func (k *fakeKeys) Anchor() string         { return "anchor-public" }
func (k *fakeKeys) AnchorID() string       { return "anchor-id" }
func (k *fakeKeys) Horizon() time.Duration { return time.Hour }

type fakeEdges []edgepub.EdgeStatus

func (f fakeEdges) List() []edgepub.EdgeStatus { return f }

type fakeOverrides struct{}

func (fakeOverrides) AdminOverrides(context.Context) ([]edgepub.Override, error) {
	return []edgepub.Override{{SubjectKey: token.SubjectKey("sub-bob"), Groups: []string{"staff", "ops"}, At: t0}}, nil
}

// standing is the edges' view of the administrator.
type standing struct {
	mu      sync.Mutex
	revoked bool
	groups  []string
	over    bool
}

func (s *standing) Standing(string, time.Time) (bool, []string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.revoked, s.groups, s.over
}

// signInOverride is the override the publisher reports at sign-in.
type signInOverride struct {
	mu     sync.Mutex
	groups []string
	ok     bool
	err    error
}

func (o *signInOverride) GroupsOverride(context.Context, string) ([]string, bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.groups, o.ok, o.err
}

type fixture struct {
	override *signInOverride
	srv      *httptest.Server
	h        *Handler
	auth     *fakeAuth
	store    *sessiontest.Store
	edge     *fakeEdge
	keys     *fakeKeys
	audit    *events.Memory
	standing *standing
	seal     *seal.Key
	// logs is everything the console and the admin API logged.
	logs *syncbuf.Buffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{
		auth: &fakeAuth{person: oidcflow.Person{Subject: "sub-alice", Username: "alice", Email: "alice@example.com", Groups: []string{"staff", "admins"}}},
		store: sessiontest.New(
			session.Session{ID: strings.Repeat("a", 43), Subject: "sub-alice", Username: "alice", Email: "alice@example.com", Groups: []string{"staff", "admins"},
				IssuedAt: t0.Add(-time.Hour), ExpiresAt: t0.Add(time.Hour), RefreshToken: refreshSecret, IDToken: idTokenSecret, KeyID: "kidA"},
			session.Session{ID: strings.Repeat("b", 43), Subject: "sub-bob", Username: "bob", Email: "bob@example.com", Groups: []string{"staff"},
				IssuedAt: t0.Add(-2 * time.Hour), RefreshedAt: t0.Add(-time.Minute), ExpiresAt: t0.Add(time.Hour), RefreshToken: refreshSecret, IDToken: idTokenSecret},
			session.Session{ID: strings.Repeat("c", 43), Subject: "sub-bob", Username: "bob", Email: "bob@example.com", Groups: []string{"staff"},
				IssuedAt: t0.Add(-3 * time.Hour), ExpiresAt: t0.Add(time.Hour), RefreshToken: refreshSecret},
			session.Session{ID: strings.Repeat("d", 43), Subject: "sub-carol", Username: "carol", Groups: []string{"finance"},
				IssuedAt: t0.Add(-10 * time.Hour), ExpiresAt: t0.Add(time.Hour)},
		),
		edge:     &fakeEdge{},
		keys:     &fakeKeys{},
		audit:    &events.Memory{},
		standing: &standing{},
		override: &signInOverride{},
	}
	var err error
	if f.seal, _, err = seal.Generate(); err != nil {
		t.Fatal(err)
	}
	f.logs = &syncbuf.Buffer{}
	logger := slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tokens := servicetokentest.NewSigner("kidA").Manager(t, f.store, f.edge, f.keys.Horizon, nil)
	api, err := admin.New(admin.Options{
		Token: adminToken, Store: f.store, Edge: f.edge, Keys: f.keys,
		Edges: fakeEdges{
			{Heartbeat: natsedge.Heartbeat{Edge: "edge", Replica: "traefik-1", Synced: true, Seq: 9}, Received: t0},
			{Heartbeat: natsedge.Heartbeat{Edge: "edge", Replica: "traefik-2", Synced: false, Seq: 3}, Received: t0.Add(-time.Minute), Stale: true, Behind: 6},
		},
		Audit: f.audit, Events: f.audit, Overrides: fakeOverrides{}, ServiceTokens: tokens, Logger: logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewUnstartedServer(nil)
	f.srv.Start()
	t.Cleanup(f.srv.Close)
	f.h, err = New(Options{BaseURL: f.srv.URL, Groups: []string{"admins"}, SignIn: f.auth, API: api.Internal(), Seal: f.seal,
		Standing: f.standing, Overrides: f.override, Audit: f.audit, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	f.srv.Config.Handler = f.h
	return f
}

// browser is a cookie-jar client that does not follow redirects.
type browser struct {
	c *http.Client
	f *fixture
}

func (f *fixture) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{f: f, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type answer struct {
	status int
	header http.Header
	body   string
}

func (b *browser) do(t *testing.T, method, path string, form url.Values, header map[string]string) answer {
	t.Helper()
	var rd io.Reader
	if form != nil {
		rd = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.f.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(body)}
}

func (b *browser) get(t *testing.T, path string) answer { return b.do(t, "GET", path, nil, nil) }

// post sends a form as the console's own page would (Origin of the console).
func (b *browser) post(t *testing.T, path string, form url.Values) answer {
	return b.do(t, "POST", path, form, map[string]string{"Origin": b.f.srv.URL, "Sec-Fetch-Site": "same-origin"})
}

// signIn goes through /console/signin and the callback as the IdP's person.
func (b *browser) signIn(t *testing.T) answer {
	t.Helper()
	a := b.get(t, Prefix+"signin?rd=/console/users")
	if a.status != http.StatusFound {
		t.Fatalf("signin: %d", a.status)
	}
	loc, _ := url.Parse(a.header.Get("Location"))
	return b.get(t, CallbackPath+"?code=c&state="+loc.Query().Get("state"))
}

func (b *browser) csrf(t *testing.T) string {
	t.Helper()
	page := b.get(t, Prefix+"users").body
	_, rest, ok := strings.Cut(page, `name="csrf" value="`)
	if !ok {
		t.Fatalf("no csrf field on the users page:\n%s", page)
	}
	tok, _, _ := strings.Cut(rest, `"`)
	return tok
}

func adminBrowser(t *testing.T, f *fixture) *browser {
	t.Helper()
	b := f.browser()
	if a := b.signIn(t); a.status != http.StatusSeeOther || a.header.Get("Location") != "/console/users" {
		t.Fatalf("admin sign-in: %d to %q: %s", a.status, a.header.Get("Location"), a.body)
	}
	return b
}

func TestAdminSignsInAndSeesUsers(t *testing.T) {
	f := newFixture(t)
	b := adminBrowser(t, f)
	a := b.get(t, Prefix+"users")
	if a.status != 200 || !strings.Contains(a.body, "bob@example.com") || !strings.Contains(a.body, `id="admin-name">alice<`) {
		t.Fatalf("users page: %d\n%s", a.status, a.body)
	}
	ev := f.audit.All()
	if len(ev) != 1 || ev[0].Kind != events.KindConsoleSignIn || ev[0].Actor != "alice" || ev[0].Source != events.SourceConsole {
		t.Errorf("sign-in events %+v", ev)
	}
}

// TestConsoleNonAdminGets403AndNoCookie: a person of the IdP who is not in
// an administrator group signs in; they get 403, no console cookie, and
// no page shows them anything.
func TestConsoleNonAdminGets403AndNoCookie(t *testing.T) {
	f := newFixture(t)
	f.auth.person = oidcflow.Person{Subject: "sub-bob", Username: "bob", Groups: []string{"staff"}}
	b := f.browser()
	a := b.signIn(t)
	if a.status != http.StatusForbidden {
		t.Fatalf("non-admin callback: %d, want 403", a.status)
	}
	for _, c := range a.header.Values("Set-Cookie") {
		if strings.HasPrefix(c, "edgepass_console=") && !strings.Contains(c, "Max-Age=0") {
			t.Fatalf("non-admin got a console cookie: %s", c)
		}
	}
	for _, leak := range []string{"bob@example.com", "carol", "traefik-1", "kidA", "/console/users"} {
		if strings.Contains(a.body, leak) {
			t.Errorf("403 page shows %q:\n%s", leak, a.body)
		}
	}
	if a := b.get(t, Prefix+"users"); a.status != http.StatusFound || !strings.HasPrefix(a.header.Get("Location"), Prefix+"signin") {
		t.Errorf("after 403 the users page answered %d %q; want a redirect to sign in", a.status, a.header.Get("Location"))
	}
	if a := b.get(t, Prefix+"events.json"); a.status != http.StatusUnauthorized || strings.Contains(a.body, "alice") {
		t.Errorf("events.json without a console session: %d %s", a.status, a.body)
	}
	ev := f.audit.All()
	if len(ev) != 1 || ev[0].Kind != events.KindConsoleDenied || ev[0].Actor != "bob" {
		t.Errorf("events %+v, want one console_denied by bob", ev)
	}
}

// TestConsoleRejectsCrossSiteEndSession: another site (or a same-site
// page on another port) makes the administrator's browser post "end this
// session"; every variant is refused and the session lives on.
func TestConsoleRejectsCrossSiteEndSession(t *testing.T) {
	f := newFixture(t)
	b := adminBrowser(t, f)
	tok := b.csrf(t)
	other := f.browser()
	other.signIn(t)
	otherTok := other.csrf(t)
	sid := strings.Repeat("b", 43)
	cases := []struct {
		name   string
		header map[string]string
		csrf   string
	}{
		{"another origin, right token", map[string]string{"Origin": "https://evil.example"}, tok},
		{"same host, another port (same-site)", map[string]string{"Origin": "http://127.0.0.1:1"}, tok},
		{"Origin null (sandboxed frame)", map[string]string{"Origin": "null"}, tok},
		{"Origin null from another site", map[string]string{"Origin": "null", "Sec-Fetch-Site": "cross-site"}, tok},
		{"no Origin, Sec-Fetch-Site cross-site", map[string]string{"Sec-Fetch-Site": "cross-site"}, tok},
		{"no Origin, Sec-Fetch-Site same-site", map[string]string{"Sec-Fetch-Site": "same-site"}, tok},
		{"neither header", nil, tok},
		{"own origin, no token", map[string]string{"Origin": f.srv.URL}, ""},
		{"own origin, wrong token", map[string]string{"Origin": f.srv.URL}, "guessed"},
		{"own origin, another administrator's token", map[string]string{"Origin": f.srv.URL}, otherTok + "x"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			form := url.Values{"sid": {sid}}
			if c.csrf != "" {
				form.Set("csrf", c.csrf)
			}
			a := b.do(t, "POST", Prefix+"session/end", form, c.header)
			if a.status != http.StatusForbidden {
				t.Fatalf("answered %d, want 403", a.status)
			}
			if !f.store.Has(sid) || f.edge.count() != 0 {
				t.Fatalf("the session was ended (edge calls %v)", f.edge.calls)
			}
		})
	}
	// The same request from the console's own page works, also as a
	// browser sends it under a no-referrer policy (Origin "null", and
	// Sec-Fetch-Site saying same-origin).
	if a := b.do(t, "POST", Prefix+"session/end", url.Values{"sid": {strings.Repeat("c", 43)}, "csrf": {tok}},
		map[string]string{"Origin": "null", "Sec-Fetch-Site": "same-origin"}); a.status != http.StatusSeeOther {
		t.Fatalf("own page, Origin null: %d %s", a.status, a.body)
	}
	if a := b.post(t, Prefix+"session/end", url.Values{"sid": {sid}, "csrf": {tok}, "reason": {"lost laptop"}}); a.status != http.StatusSeeOther {
		t.Fatalf("own page: %d %s", a.status, a.body)
	}
	if f.store.Has(sid) {
		t.Fatal("own page's request did not end the session")
	}
}

// TestConsoleRejectsForgedOrStolenCookies: a cookie sealed with another
// key, edited, or used after it expired gives no access.
func TestConsoleRejectsForgedOrStolenCookies(t *testing.T) {
	f := newFixture(t)
	other, _, _ := seal.Generate()
	forged := other.Seal([]byte(`{"sub":"sub-alice","user":"alice","iat":1,"exp":99999999999,"csrf":"x"}`), sessionAAD)
	wrongPurpose := f.seal.Seal([]byte(`{"sub":"sub-alice","user":"alice","iat":1,"exp":99999999999,"csrf":"x"}`), signInAAD)
	expired := f.seal.Seal([]byte(`{"sub":"sub-alice","user":"alice","iat":1,"exp":2,"csrf":"x"}`), sessionAAD)
	for name, v := range map[string]string{"another key": forged, "sealed as a sign-in": wrongPurpose, "expired": expired, "garbage": "v1.zzz"} {
		req, _ := http.NewRequest("GET", f.srv.URL+Prefix+"users", nil)
		req.AddCookie(&http.Cookie{Name: "edgepass_console", Value: v})
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			t.Errorf("%s cookie: %d, want a redirect to sign in", name, resp.StatusCode)
		}
	}
}

func TestConsoleSignInIgnoresForeignReturnPaths(t *testing.T) {
	for _, rd := range []string{"https://evil.example/", "//evil.example/x", "/console/\\evil", "/api/v1/sessions", "javascript:alert(1)"} {
		if got := localPath(rd); got != Prefix {
			t.Errorf("localPath(%q) = %q, want %q", rd, got, Prefix)
		}
	}
	if got := localPath("/console/events?kind=user_revoked"); got != "/console/events?kind=user_revoked" {
		t.Errorf("a console page was not kept: %q", got)
	}
}

func TestConsoleCallbackWithoutItsPendingSignInIsRefused(t *testing.T) {
	f := newFixture(t)
	b := f.browser()
	// A callback link someone else started (no sign-in cookie here).
	if a := b.get(t, CallbackPath+"?code=c&state=state-b"); a.status != http.StatusBadRequest {
		t.Fatalf("callback without its cookie: %d", a.status)
	}
	// A state other than the one sealed in this browser's cookie.
	b.get(t, Prefix+"signin")
	if a := b.get(t, CallbackPath+"?code=c&state=state-zzz"); a.status != http.StatusBadRequest {
		t.Fatalf("callback with another state: %d", a.status)
	}
	if n := len(f.audit.All()); n != 0 {
		t.Errorf("%d events for refused callbacks", n)
	}
}

// TestConsoleHeadersOnEveryAnswer: CSP without inline script, no framing,
// no sniffing, no caching, on pages, errors and static files alike.
func TestConsoleHeadersOnEveryAnswer(t *testing.T) {
	f := newFixture(t)
	b := adminBrowser(t, f)
	anon := f.browser()
	for _, c := range []struct {
		b    *browser
		path string
	}{
		{b, Prefix}, {b, Prefix + "users"}, {b, Prefix + "events"}, {b, Prefix + "nope"}, {b, tokensPath}, {anon, Prefix + "users"},
		{anon, CallbackPath}, {anon, Prefix + "static/console.css"}, {anon, Prefix + "static/console.js"}, {anon, Prefix + "signed-out"},
	} {
		a := c.b.get(t, c.path)
		csp := a.header.Get("Content-Security-Policy")
		if csp != CSP || a.header.Get("X-Frame-Options") != "DENY" || a.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: CSP %q, XFO %q, XCTO %q", c.path, csp, a.header.Get("X-Frame-Options"), a.header.Get("X-Content-Type-Options"))
		}
	}
	if strings.Contains(CSP, "unsafe") || !strings.Contains(CSP, "script-src 'self'") || !strings.Contains(CSP, "frame-ancestors 'none'") {
		t.Errorf("CSP %q", CSP)
	}
	// No inline script or handler anywhere: the CSP would block it anyway.
	for _, p := range []string{Prefix, Prefix + "users", Prefix + "user?sub=sub-bob", Prefix + "events", Prefix + "keys", Prefix + "edges", Prefix + "groups", tokensPath} {
		body := b.get(t, p).body
		if strings.Contains(body, "<script>") || strings.Contains(body, " onclick=") || strings.Contains(body, "<style>") || strings.Contains(body, "javascript:") {
			t.Errorf("%s has inline script or style", p)
		}
	}
}

// TestConsoleNeverRendersSecrets: sessions hold refresh and ID tokens; no
// page, and not the live event feed, may show them, nor an API token, nor
// a service token after the one page that answers its creation (one is
// live, one revoked).
func TestConsoleNeverRendersSecrets(t *testing.T) {
	f := newFixture(t)
	b := adminBrowser(t, f)
	b.post(t, Prefix+"groups/set", url.Values{"csrf": {b.csrf(t)}, "user": {"bob"}, "groups": {"staff"}})
	_, liveToken := createToken(t, b, "live-bot")
	_, goneToken := createToken(t, b, "gone-bot")
	live, _ := serviceRecord(f, "live-bot")
	gone, _ := serviceRecord(f, "gone-bot")
	if a := b.post(t, tokensPath+"/revoke", url.Values{"csrf": {b.csrf(t)}, "id": {gone.ID}}); a.status != http.StatusSeeOther {
		t.Fatalf("revoke: %d", a.status)
	}
	for _, p := range []string{
		Prefix, Prefix + "users", Prefix + "users?q=staff", Prefix + "user?sub=sub-alice", Prefix + "user?sub=sub-bob",
		Prefix + "session?sid=" + strings.Repeat("a", 43), Prefix + "session?sid=" + strings.Repeat("b", 43),
		Prefix + "groups", Prefix + "edges", Prefix + "keys", Prefix + "events", Prefix + "events.json?after=0",
		Prefix + "user/end?sub=sub-bob", Prefix + "keys/rotate", Prefix + "keys/revoke?kid=kidA",
		tokensPath, tokensPath + "/revoke?id=" + live.ID, Prefix + "session?sid=" + live.ID, Prefix + "user?sub=service:live-bot",
		Prefix + "events?kind=service_token_created", Prefix + "events?kind=service_token_revoked",
	} {
		a := b.get(t, p)
		if a.status != 200 {
			t.Errorf("%s: %d\n%s", p, a.status, a.body)
		}
		for _, secret := range []string{refreshSecret, idTokenSecret, adminToken, "refreshToken", "idToken", liveToken, goneToken} {
			if strings.Contains(a.body, secret) {
				t.Errorf("%s shows %q", p, secret)
			}
		}
	}
}

func TestConsoleActionsNameTheAdministrator(t *testing.T) {
	f := newFixture(t)
	b := adminBrowser(t, f)
	tok := b.csrf(t)
	steps := []struct {
		path string
		form url.Values
		kind string
		loc  string
	}{
		{Prefix + "session/end", url.Values{"sid": {strings.Repeat("d", 43)}, "reason": {"left"}}, events.KindSessionRevoked, "/console/user?sub=sub-carol&done=session"},
		{Prefix + "user/end", url.Values{"sub": {"sub-bob"}, "reason": {"compromised"}}, events.KindUserRevoked, "/console/user?sub=sub-bob&done=user"},
		{Prefix + "groups/set", url.Values{"user": {"sub:sub-bob"}, "groups": {"staff, ops,staff"}, "back_sub": {"sub-bob"}}, events.KindGroupsSet, "/console/user?sub=sub-bob&done=groups"},
		{Prefix + "groups/clear", url.Values{"user": {"sub:sub-bob"}}, events.KindGroupsCleared, "/console/groups?done=cleared"},
		{Prefix + "keys/rotate", url.Values{}, events.KindKeyRotated, "/console/keys?done=rotated"},
		{Prefix + "keys/revoke", url.Values{"kid": {"kidOLD"}, "reason": {"leaked"}}, events.KindKeyRevoked, "/console/keys?done=revoked"},
	}
	for _, s := range steps {
		s.form.Set("csrf", tok)
		a := b.post(t, s.path, s.form)
		if a.status != http.StatusSeeOther || a.header.Get("Location") != s.loc {
			t.Fatalf("POST %s: %d to %q, want 303 to %q\n%s", s.path, a.status, a.header.Get("Location"), s.loc, a.body)
		}
		ev := f.audit.All()
		e := ev[len(ev)-1]
		if e.Kind != s.kind || e.Actor != "alice" || e.ActorType != events.ActorAdmin || e.Source != events.SourceConsole || e.Reason != s.form.Get("reason") {
			t.Errorf("POST %s recorded %+v", s.path, e)
		}
	}
	if got := strings.Join(f.edge.calls, "; "); !strings.Contains(got, "groups sub-bob staff,ops") || !strings.Contains(got, "user sub-bob") {
		t.Errorf("edge calls %s", got)
	}
	// The log page shows them under alice's name.
	page := b.get(t, Prefix+"events?user=bob").body
	if !strings.Contains(page, "user_revoked") || !strings.Contains(page, "alice <small>(admin)</small>") || !strings.Contains(page, "compromised") {
		t.Errorf("event log page:\n%s", page)
	}
}

// TestConsoleBulkActionsNeedConfirmation: ending all of a user's sessions
// and the key actions are reached through a confirmation page; following
// the link changes nothing.
func TestConsoleBulkActionsNeedConfirmation(t *testing.T) {
	f := newFixture(t)
	b := adminBrowser(t, f)
	user := b.get(t, Prefix+"user?sub=sub-bob").body
	if strings.Contains(user, `action="/console/user/end"`) || !strings.Contains(user, `href="/console/user/end?sub=sub-bob"`) {
		t.Errorf("the user page must link to the confirmation, not post the bulk action")
	}
	for _, p := range []string{Prefix + "user/end?sub=sub-bob", Prefix + "keys/rotate", Prefix + "keys/revoke?kid=kidA"} {
		a := b.get(t, p)
		if a.status != 200 || !strings.Contains(a.body, `id="confirm"`) || !strings.Contains(a.body, `name="csrf"`) {
			t.Errorf("%s is not a confirmation page: %d", p, a.status)
		}
	}
	if f.edge.count() != 0 || f.keys.rotated != 0 || f.store.Len() != 4 {
		t.Errorf("a confirmation page changed something")
	}
}

// TestConsoleEndsWhenTheAdministratorIsRevoked: "users revoke alice" (or
// an override without the admin group) must also end alice's console.
func TestConsoleEndsWhenTheAdministratorIsRevoked(t *testing.T) {
	f := newFixture(t)
	b := adminBrowser(t, f)
	f.standing.mu.Lock()
	f.standing.over, f.standing.groups = true, []string{"staff"}
	f.standing.mu.Unlock()
	if a := b.get(t, Prefix+"users"); a.status != http.StatusForbidden || strings.Contains(a.body, "bob@example.com") {
		t.Errorf("override without the admin group: %d", a.status)
	}
	f.standing.mu.Lock()
	f.standing.over, f.standing.revoked = false, true
	f.standing.mu.Unlock()
	b = adminBrowser(t, f)
	if a := b.get(t, Prefix+"users"); a.status != http.StatusForbidden || strings.Contains(a.body, "bob@example.com") {
		t.Errorf("revoked administrator: %d", a.status)
	}
	tok := "x"
	if a := b.post(t, Prefix+"keys/rotate", url.Values{"csrf": {tok}}); a.status != http.StatusForbidden || f.keys.rotated != 0 {
		t.Errorf("revoked administrator rotated a key: %d", a.status)
	}
}

func TestConsoleUsersSearchAndSort(t *testing.T) {
	f := newFixture(t)
	b := adminBrowser(t, f)
	order := func(body string) []string {
		var out []string
		for _, name := range []string{"alice", "bob", "carol"} {
			if i := strings.Index(body, ">"+name+"</a>"); i >= 0 {
				out = append(out, name)
			}
		}
		// sort by position
		for i := 0; i < len(out); i++ {
			for j := i + 1; j < len(out); j++ {
				if strings.Index(body, ">"+out[j]+"</a>") < strings.Index(body, ">"+out[i]+"</a>") {
					out[i], out[j] = out[j], out[i]
				}
			}
		}
		return out
	}
	for _, c := range []struct{ q, want string }{
		{"", "bob,alice,carol"},           // last seen: bob refreshed a minute ago
		{"?sort=name", "alice,bob,carol"}, // by name
		{"?q=FINANCE", "carol"},           // by group, any case
		{"?q=bob%40example", "bob"},       // by email
		{"?q=sub-alice", "alice"},         // by sub
		{"?q=nobody", ""},
	} {
		got := strings.Join(order(b.get(t, Prefix+"users"+c.q).body), ",")
		if got != c.want {
			t.Errorf("users%s: %q, want %q", c.q, got, c.want)
		}
	}
}

func TestConsoleEdgesPageHighlightsStaleReplicas(t *testing.T) {
	f := newFixture(t)
	b := adminBrowser(t, f)
	body := b.get(t, Prefix+"edges").body
	if !strings.Contains(body, `class="stale" data-replica="traefik-2"`) || !strings.Contains(body, `class="" data-replica="traefik-1"`) {
		t.Errorf("edges page:\n%s", body)
	}
}

func TestConsoleAPIErrorsAreShownNotHidden(t *testing.T) {
	f := newFixture(t)
	b := adminBrowser(t, f)
	a := b.post(t, Prefix+"groups/set", url.Values{"csrf": {b.csrf(t)}, "user": {"nobody"}, "groups": {"x"}})
	if a.status != http.StatusNotFound || !strings.Contains(a.body, "no stored session matches user") {
		t.Errorf("unknown user: %d\n%s", a.status, a.body)
	}
}

func TestNewRefusesIncompleteOptions(t *testing.T) {
	if _, err := New(Options{BaseURL: "http://x/console"}); err == nil {
		t.Fatal("accepted a base URL with a path and no groups")
	}
	_, err := New(Options{BaseURL: "http://127.0.0.1:8001", Groups: []string{"admins"}})
	if err == nil || !errors.Is(err, err) || !strings.Contains(err.Error(), "required") {
		t.Fatalf("err = %v", err)
	}
}

// TestConsoleSignInHonoursGroupOverrides: an administrator's override in
// force wins over the IdP's groups at sign-in, both ways; an override that
// cannot be read refuses the sign-in (it might remove the admin group).
func TestConsoleSignInHonoursGroupOverrides(t *testing.T) {
	cases := []struct {
		name   string
		idp    []string
		over   *signInOverride
		status int
	}{
		{"override drops the admin group", []string{"admins"}, &signInOverride{groups: []string{"staff"}, ok: true}, http.StatusForbidden},
		{"override grants the admin group", []string{"staff"}, &signInOverride{groups: []string{"admins"}, ok: true}, http.StatusSeeOther},
		{"override unreadable", []string{"admins"}, &signInOverride{err: errors.New("nats: timeout")}, http.StatusServiceUnavailable},
		{"no override", []string{"admins"}, &signInOverride{}, http.StatusSeeOther},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.auth.person.Groups = c.idp
			f.override.groups, f.override.ok, f.override.err = c.over.groups, c.over.ok, c.over.err
			a := f.browser().signIn(t)
			if a.status != c.status {
				t.Fatalf("sign-in: %d, want %d", a.status, c.status)
			}
			if strings.Contains(a.body, "nats: timeout") {
				t.Error("the page shows the internal error")
			}
		})
	}
}

// TestConsoleAcceptsSameOriginWithDefaultPort: with the console's URL
// written with its default port (https://x:443), a browser's Origin
// (https://x, default port left out) is the console's own; another port
// or another host is not, and a present, mismatched Origin is refused
// even when Sec-Fetch-Site says same-origin.
func TestConsoleAcceptsSameOriginWithDefaultPort(t *testing.T) {
	f := newFixture(t)
	for _, base := range []string{"https://console.example:443", "http://console.example:80"} {
		o := f.h.o
		o.BaseURL = base
		h, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		scheme, _, _ := strings.Cut(base, "://")
		cases := []struct {
			header map[string]string
			ok     bool
		}{
			{map[string]string{"Origin": scheme + "://console.example"}, true},
			{map[string]string{"Origin": strings.ToUpper(scheme) + "://Console.Example"}, true},
			{map[string]string{"Origin": base}, true},
			{map[string]string{"Origin": scheme + "://console.example:8443"}, false},
			{map[string]string{"Origin": scheme + "://evil.example", "Sec-Fetch-Site": "same-origin"}, false},
			{map[string]string{"Sec-Fetch-Site": "same-origin"}, true},
		}
		for _, c := range cases {
			r := httptest.NewRequest("POST", base+Prefix+"session/end", nil)
			for k, v := range c.header {
				r.Header.Set(k, v)
			}
			if why := h.crossSite(r); (why == "") != c.ok {
				t.Errorf("console at %s, headers %v: crossSite = %q, want same-origin %v", base, c.header, why, c.ok)
			}
		}
	}
}
