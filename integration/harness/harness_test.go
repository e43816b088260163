package harness

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseFormsFindsHiddenFieldsAndDetachedButtons(t *testing.T) {
	base, _ := url.Parse("http://127.0.0.1:9000/session/end")
	body := `<form method="post" action="/session/end/confirm" id="op.logoutForm"><input type="hidden" name="xsrf" value="a&amp;b"/></form>
<button type="submit" form="op.logoutForm" name="logout" value="yes">Yes</button>
<form id=login method=POST action='http://127.0.0.1:9000/interaction/x/login'>
<input name="login" value=""><input name="password" type="password"><input type="checkbox" name="remember"><button type="submit">Sign in</button></form>`
	forms := ParseForms(body, base)
	if len(forms) != 2 {
		t.Fatalf("found %d forms, want 2", len(forms))
	}
	lo := FindForm(forms, "op.logoutForm")
	if lo == nil || lo.Method != "POST" || lo.Action != "http://127.0.0.1:9000/session/end/confirm" {
		t.Fatalf("logout form: %+v", lo)
	}
	if lo.Fields.Get("xsrf") != "a&b" {
		t.Fatalf("hidden field not unescaped: %q", lo.Fields.Get("xsrf"))
	}
	if lo.Buttons["logout"] != "yes" {
		t.Fatalf("button attached by form= not found: %v", lo.Buttons)
	}
	li := FindForm(forms, "login")
	if li == nil || li.Action != "http://127.0.0.1:9000/interaction/x/login" {
		t.Fatalf("login form: %+v", li)
	}
	if _, ok := li.Fields["remember"]; ok {
		t.Fatal("unchecked checkbox submitted")
	}
	if _, ok := li.Fields["password"]; !ok {
		t.Fatal("password field missing")
	}
}

func TestTCPProxyCutSeversAndRefusesUntilRestore(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c) }()
		}
	}()
	port, _ := FreePort()
	p, err := StartTCPProxy(port, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	roundTrip := func(c net.Conn) error {
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 4)
		_, err := io.ReadFull(c, buf)
		return err
	}
	c, err := net.Dial("tcp", hostPort(port))
	if err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(c); err != nil {
		t.Fatalf("proxy does not forward: %v", err)
	}
	p.Cut()
	if err := roundTrip(c); err == nil {
		t.Fatal("connection survived Cut")
	}
	c2, err := net.Dial("tcp", hostPort(port))
	if err == nil {
		if roundTrip(c2) == nil {
			t.Fatal("new connection accepted while cut")
		}
		c2.Close()
	}
	p.Restore()
	c3, err := net.Dial("tcp", hostPort(port))
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if err := roundTrip(c3); err != nil {
		t.Fatalf("proxy does not forward after Restore: %v", err)
	}
}

// testRP is a minimal relying party: it records what the provider sends to
// the redirect and back-channel logout URIs.
type testRP struct {
	srv       *httptest.Server
	mu        sync.Mutex
	callbacks []url.Values
	logouts   []string
}

func newTestRP() *testRP {
	rp := &testRP{}
	mux := http.NewServeMux()
	mux.HandleFunc("/callback", func(w http.ResponseWriter, r *http.Request) {
		rp.mu.Lock()
		rp.callbacks = append(rp.callbacks, r.URL.Query())
		rp.mu.Unlock()
		_, _ = io.WriteString(w, "callback")
	})
	mux.HandleFunc("/backchannel-logout", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		rp.mu.Lock()
		rp.logouts = append(rp.logouts, r.PostForm.Get("logout_token"))
		rp.mu.Unlock()
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "home") })
	rp.srv = httptest.NewServer(mux)
	return rp
}

func (rp *testRP) lastLogout() string {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if len(rp.logouts) == 0 {
		return ""
	}
	return rp.logouts[len(rp.logouts)-1]
}

func jwtPayload(t *testing.T, raw string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := DecodeJWT(raw, nil, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// startProviderForRP starts the test relying party and the provider that
// sends its users back to it; it returns both and the RP's redirect URI.
func startProviderForRP(t *testing.T) (*testRP, *Provider, string) {
	t.Helper()
	rp := newTestRP()
	t.Cleanup(rp.srv.Close)
	return rp, startTestProvider(t, rp), rp.srv.URL + "/callback"
}

func startTestProvider(t *testing.T, rp *testRP) *Provider {
	t.Helper()
	repo, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := runScript(context.Background(), "oidcprovider", repo, "", "scripts/install-oidc-provider.sh", t.Logf); err != nil {
		t.Fatal(err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("harness: oidcprovider needs node on PATH: %v", err)
	}
	port, _ := FreePort()
	dir := t.TempDir()
	p, err := StartProvider(ProviderSpec{
		Node:                   node,
		Dir:                    filepath.Join(repo, "integration", "oidcprovider"),
		Port:                   port,
		ClientSecret:           "test-secret",
		RedirectURIs:           []string{rp.srv.URL + "/callback"},
		PostLogoutRedirectURIs: []string{rp.srv.URL + "/"},
		BackchannelLogoutURI:   rp.srv.URL + "/backchannel-logout",
		LogDir:                 dir,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("oidcprovider log:\n%s", p.Tail(40))
		}
		_ = p.Stop(5 * time.Second)
	})
	return p
}

type authRequest struct {
	state, nonce, verifier string
	url                    string
}

func newAuthRequest(issuer, redirect string, pkce bool) authRequest {
	a := authRequest{state: RandomSecret(12), nonce: RandomSecret(12), verifier: RandomSecret(32)}
	q := url.Values{
		"client_id":     {"edgepass"},
		"response_type": {"code"},
		"scope":         {"openid profile email groups offline_access"},
		"redirect_uri":  {redirect},
		"state":         {a.state},
		"nonce":         {a.nonce},
	}
	if pkce {
		sum := sha256.Sum256([]byte(a.verifier))
		q.Set("code_challenge", base64.RawURLEncoding.EncodeToString(sum[:]))
		q.Set("code_challenge_method", "S256")
	}
	a.url = issuer + "/auth?" + q.Encode()
	return a
}

// TestProviderLogin drives the test OIDC provider the way the daemon and a
// browser will: authorization code + PKCE, the password form, consent, the
// token exchange, the claims edgepass relies on, and RP-initiated logout with
// back-channel logout.
func TestProviderLogin(t *testing.T) {
	rp, p, redirect := startProviderForRP(t)

	b := NewBrowser(p.Issuer)
	ar := newAuthRequest(p.Issuer, redirect, true)
	page, shown, err := b.SignIn(ar.url, AliceUser, AlicePassword)
	if err != nil {
		t.Fatal(err)
	}
	if !shown {
		t.Fatalf("no login form shown:\n%s", page.Trace())
	}
	if page.URL.Path != "/callback" || page.Status != 200 {
		t.Fatalf("sign-in did not end at the callback:\n%s", page.Trace())
	}
	q := page.URL.Query()
	if q.Get("state") != ar.state || q.Get("code") == "" || q.Get("iss") != p.Issuer {
		t.Fatalf("callback query %v", q)
	}

	// Token exchange with the client secret and the PKCE verifier.
	form := url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "redirect_uri": {redirect}, "code_verifier": {ar.verifier}}
	req, _ := http.NewRequest("POST", p.Issuer+"/token", strings.NewReader(form.Encode()))
	req.SetBasicAuth("edgepass", "test-secret")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, body, err := b.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("token exchange: %d %s", resp.StatusCode, body)
	}
	var tok struct {
		IDToken      string `json:"id_token"`
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(body, &tok); err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == "" {
		t.Errorf("no refresh token issued (the daemon refreshes sessions with it): %s", body)
	}
	claims := jwtPayload(t, tok.IDToken)
	want := map[string]any{"sub": "alice", "email": AliceEmail, "name": AliceName, "preferred_username": "alice", "nonce": ar.nonce, "iss": p.Issuer, "aud": "edgepass"}
	for k, v := range want {
		if claims[k] != v {
			t.Errorf("id_token %s = %v, want %v", k, claims[k], v)
		}
	}
	groups, _ := claims["groups"].([]any)
	if len(groups) != 2 || groups[0] != "staff" || groups[1] != "admins" {
		t.Errorf("id_token groups = %v, want [staff admins]", claims["groups"])
	}
	if claims["sid"] == nil {
		t.Error("id_token has no sid (back-channel logout needs it)")
	}

	// Userinfo agrees.
	ureq, _ := http.NewRequest("GET", p.Issuer+"/me", nil)
	ureq.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	uresp, ubody, err := b.Do(ureq)
	if err != nil || uresp.StatusCode != 200 {
		t.Fatalf("userinfo: %v %s", err, ubody)
	}
	var ui map[string]any
	_ = json.Unmarshal(ubody, &ui)
	if ui["email"] != AliceEmail || ui["groups"] == nil {
		t.Errorf("userinfo = %v", ui)
	}

	// A second authorization in the same browser uses the provider session.
	page, shown, err = b.SignIn(newAuthRequest(p.Issuer, redirect, true).url, AliceUser, AlicePassword)
	if err != nil || shown || page.URL.Path != "/callback" {
		t.Fatalf("SSO session not reused (err %v, login shown %v):\n%s", err, shown, page.Trace())
	}

	// RP-initiated logout: confirm form, back-channel logout, then the
	// provider asks for credentials again.
	end := p.Issuer + "/session/end?" + url.Values{"id_token_hint": {tok.IDToken}, "post_logout_redirect_uri": {rp.srv.URL + "/"}}.Encode()
	page, err = b.Navigate(end)
	if err != nil {
		t.Fatal(err)
	}
	page, confirmed, err := b.ConfirmProviderLogout(page)
	if err != nil || !confirmed {
		t.Fatalf("logout confirmation (confirmed %v): %v\n%s", confirmed, err, page.Trace())
	}
	if page.URL.String() != rp.srv.URL+"/" {
		t.Fatalf("logout did not return to the post-logout URI:\n%s", page.Trace())
	}
	lt := rp.lastLogout()
	if lt == "" {
		t.Fatal("no back-channel logout token delivered")
	}
	lc := jwtPayload(t, lt)
	if lc["sub"] != "alice" || lc["sid"] != claims["sid"] || lc["events"] == nil {
		t.Errorf("logout token claims = %v", lc)
	}
	_, shown, err = b.SignIn(newAuthRequest(p.Issuer, redirect, true).url, AliceUser, AlicePassword)
	if err != nil || !shown {
		t.Fatalf("after logout the provider did not ask for credentials (err %v)", err)
	}
}

// TestProviderRefusesWrongPasswordAndMissingPKCE: the provider must check
// credentials (a login form that accepts anything would make the suite's
// sign-ins meaningless) and require PKCE.
func TestProviderRefusesWrongPasswordAndMissingPKCE(t *testing.T) {
	_, p, redirect := startProviderForRP(t)

	b := NewBrowser(p.Issuer)
	page, _, err := b.SignIn(newAuthRequest(p.Issuer, redirect, true).url, BobUser, "alice-password")
	if !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("wrong password: err = %v, want ErrBadCredentials\n%s", err, page.Trace())
	}
	if page.Status != http.StatusUnauthorized {
		t.Errorf("wrong password page status %d, want 401", page.Status)
	}
	_, _, err = NewBrowser(p.Issuer).SignIn(newAuthRequest(p.Issuer, redirect, true).url, "mallory", "x")
	if !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("unknown user: err = %v, want ErrBadCredentials", err)
	}

	page, err = NewBrowser(p.Issuer).Navigate(newAuthRequest(p.Issuer, redirect, false).url)
	if err != nil {
		t.Fatal(err)
	}
	if page.URL.Path != "/callback" || page.URL.Query().Get("error") != "invalid_request" {
		t.Fatalf("authorization without PKCE was not refused:\n%s", page.Trace())
	}
}

// TestTraefikStarts runs the cached Traefik with the open route and the echo
// backend (no plugin): the base every other test builds on.
func TestTraefikStarts(t *testing.T) {
	repo, traefik, dir := traefikForTest(t)
	echo := echoForTest(t, repo, dir)
	port, _ := FreePort()
	api, _ := FreePort()
	tr, err := StartTraefik(TraefikSpec{
		Bin: traefik, Repo: repo, Dir: filepath.Join(dir, "traefik"), Name: "traefik",
		Port: port, APIPort: api, LogDir: dir,
		Routes: RoutesSpec{EchoURL: echo.URL, NoPlugin: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Stop(5 * time.Second)
	b := NewBrowser("")
	resp, body, err := b.API("GET", tr.URL+PathOpen+"/hello?x=1", http.Header{"X-Test": {"yes"}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("open route: %d %s", resp.StatusCode, body)
	}
	e, err := DecodeEchoed(body)
	if err != nil {
		t.Fatal(err)
	}
	if e.Path != PathOpen+"/hello" || e.Query != "x=1" || e.Get("X-Test") != "yes" {
		t.Fatalf("backend saw %+v", e.Request)
	}
	if e.Get("X-Forwarded-Host") != hostPort(port) {
		t.Errorf("Traefik did not add X-Forwarded-Host: %v", e.Headers)
	}
	if os.Getenv("EDGEPASS_KEEP") != "" {
		t.Logf("work dir: %s", dir)
	}
}

// traefikForTest finds the cached Traefik binary (building it the first
// time) and gives the test a working directory.
func traefikForTest(t *testing.T) (repo, bin, dir string) {
	t.Helper()
	repo, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	bin, err = runScript(ctx, "traefik", repo, "EDGEPASS_TRAEFIK", "scripts/build-traefik.sh", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	return repo, bin, t.TempDir()
}

// echoForTest builds and starts the echo backend under dir until the test ends.
func echoForTest(t *testing.T, repo, dir string) *Echo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := filepath.Join(dir, "echo")
	if err := goBuild(ctx, "echo", filepath.Join(repo, "integration"), bin, "./echo"); err != nil {
		t.Fatal(err)
	}
	port, _ := FreePort()
	echo, err := StartEcho(bin, port, false, dir, "echo")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { echo.Stop(5 * time.Second) })
	return echo
}
