package harness

import (
	"crypto/ed25519"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/plugin/token"
)

// TestTraefikLoadsPluginWithInlineJWKS runs the plugin inside the real
// Traefik (Yaegi, loaded from source as a local plugin) without NATS or the
// daemon: tokens signed here with the inline JWKS's key are accepted,
// anything else is refused. It isolates "the plugin loads and verifies in
// Traefik" from the rest of the stack.
func TestTraefikLoadsPluginWithInlineJWKS(t *testing.T) {
	repo, traefik, dir := traefikForTest(t)
	echo := echoForTest(t, repo, dir)

	pub, priv, _ := ed25519.GenerateKey(nil)
	jwks, err := token.NewKeySet(token.Key{ID: "k1", Public: pub}).MarshalJWKS()
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://127.0.0.1:1" // nothing listens: the plugin must not need it
	port, _ := FreePort()
	api, _ := FreePort()
	tr, err := StartTraefik(TraefikSpec{
		Bin: traefik, Repo: repo, Dir: filepath.Join(dir, "traefik"), Name: "traefik",
		Port: port, APIPort: api, LogDir: dir,
		Routes: RoutesSpec{
			EchoURL:   echo.URL,
			VerifyURL: issuer + "/verify",
			Plugin:    PluginOptions{LoginURL: issuer + "/login", Issuer: issuer, JWKS: string(jwks)},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("traefik log:\n%s", tr.Tail(40))
		}
		tr.Stop(5 * time.Second)
	}()

	now := time.Now()
	sign := func(c token.Claims, key ed25519.PrivateKey) string {
		raw, err := token.Sign(&c, "k1", key)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	claims := token.Claims{
		Issuer: issuer, Audience: token.Audience{"edgepass"}, Subject: "carol", SessionID: "c2Vzc2lvbi1pZC1mb3ItY2Fyb2wtMDE",
		IssuedAt: now.Unix(), Expiry: now.Add(time.Hour).Unix(), Email: "carol@example.com", Name: "Carol",
		PreferredUsername: "carol", Groups: []string{"staff"},
	}
	good := sign(claims, priv)
	_, otherKey, _ := ed25519.GenerateKey(nil)
	expired := claims
	expired.IssuedAt, expired.Expiry = now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
	wrongIss := claims
	wrongIss.Issuer = "http://127.0.0.1:2"

	do := func(path string, h http.Header) (int, *Echoed, string) {
		req, _ := http.NewRequest("GET", tr.URL+path, nil)
		req.Header.Set("Accept", "application/json")
		for k, v := range h {
			req.Header[k] = v
		}
		resp, body, err := NewBrowser("").Do(req)
		if err != nil {
			t.Fatal(err)
		}
		e, _ := DecodeEchoed(body)
		return resp.StatusCode, e, resp.Header.Get("Location")
	}
	auth := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

	code, e, _ := do(PathApp+"/x", auth(good))
	if code != 200 || e == nil {
		t.Fatalf("valid token: %d", code)
	}
	if e.Get(HeaderUser) != "carol" || e.Get(HeaderEmail) != "carol@example.com" || e.Get(HeaderGroups) != "staff" || e.Get(HeaderSubject) != "carol" {
		t.Errorf("identity headers: %v", e.Headers)
	}
	cookie := http.Header{"Cookie": {"edgepass_session=" + good}}
	if code, _, _ := do(PathApp+"/x", cookie); code != 200 {
		t.Errorf("valid cookie: %d", code)
	}
	for name, tok := range map[string]string{
		"other key": sign(claims, otherKey), "expired": sign(expired, priv), "wrong issuer": sign(wrongIss, priv),
	} {
		if code, _, _ := do(PathApp+"/x", auth(tok)); code != 401 {
			t.Errorf("%s: %d, want 401", name, code)
		}
	}
	if code, _, _ := do(PathAdmins+"/x", auth(good)); code != 403 {
		t.Errorf("staff on the admins route: %d, want 403", code)
	}
	req, _ := NavRequest("GET", tr.URL+PathApp+"/page?a=1", nil)
	resp, _, err := NewBrowser("").Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if loc := resp.Header.Get("Location"); resp.StatusCode != 302 || !strings.HasPrefix(loc, issuer+"/login?rd=") {
		t.Errorf("browser without a session: %d %q", resp.StatusCode, loc)
	}
	if code, e, _ := do(PathPublic+"/x", http.Header{"X_Auth_User": {"mallory"}}); code != 200 || e == nil || len(e.HeadersLike(HeaderUser)) != 0 {
		t.Errorf("public path: %d, forged header: %v", code, e)
	}
}

// TestTraefikStartFailsClearlyOnBadPluginConfig: when Traefik disables the
// plugin's routers (here: the required loginURL is missing), StartTraefik
// gives up quickly with Traefik's own error, instead of a bare timeout.
func TestTraefikStartFailsClearlyOnBadPluginConfig(t *testing.T) {
	repo, traefik, dir := traefikForTest(t)
	port, _ := FreePort()
	api, _ := FreePort()
	start := time.Now()
	tr, err := StartTraefik(TraefikSpec{
		Bin: traefik, Repo: repo, Dir: filepath.Join(dir, "traefik"), Name: "traefik-bad",
		Port: port, APIPort: api, LogDir: dir,
		Routes: RoutesSpec{
			EchoURL:   "http://127.0.0.1:1",
			VerifyURL: "http://127.0.0.1:1/verify",
			Plugin:    PluginOptions{Issuer: "http://127.0.0.1:1", JWKS: `{"keys":[]}`},
		},
	})
	if err == nil {
		tr.Stop(5 * time.Second)
		t.Fatal("Traefik with an invalid plugin configuration reported ready")
	}
	msg := err.Error()
	for _, want := range []string{"traefik-bad", "up but broken", "app@file is disabled"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not say %q:\n%s", want, msg)
		}
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("took %s to give up, want well under the 60s timeout", d)
	}
	t.Logf("error as reported:\n%s", msg)
}
