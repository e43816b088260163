package yaegi_test

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/plugin/token"
)

// baseConfig is a dynamic-configuration map as Traefik hands it to the plugin:
// string keys as written by the user, scalars often as strings.
func baseConfig() map[string]any {
	return map[string]any{
		"loginURL":     "https://auth.example.com/login",
		"issuer":       "https://auth.example.com",
		"jwks":         `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"test","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","alg":"EdDSA","use":"sig"}]}`,
		"userHeader":   "X-Auth-User",
		"emailHeader":  "X-Auth-Email",
		"groupsHeader": "X-Auth-Groups",
	}
}

func claims() *token.Claims {
	now := time.Now().Unix()
	return &token.Claims{
		Issuer: "https://auth.example.com", Audience: token.Audience{"edgepass"},
		Subject: "sub-alice", SessionID: "c2Vzc2lvbi1hbGljZS0wMDAx",
		IssuedAt: now - 60, Expiry: now + 3600,
		Email: "alice@example.com", Name: "Alice", PreferredUsername: "alice",
		Groups: []string{"dev", "ops"},
	}
}

func signed(tb testing.TB, c *token.Claims) string {
	tb.Helper()
	raw, err := token.Sign(c, "test", testPriv)
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

type backend struct {
	called int
	header http.Header
}

func (b *backend) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	b.called++
	b.header = r.Header.Clone()
	rw.WriteHeader(http.StatusTeapot)
}

func handler(t *testing.T, edit func(map[string]any)) (http.Handler, *backend) {
	t.Helper()
	cfg := baseConfig()
	if edit != nil {
		edit(cfg)
	}
	be := &backend{}
	h, err := plugin(t).newHandler(be, cfg, "yaegi-test")
	if err != nil {
		t.Fatalf("New under yaegi: %v", err)
	}
	return h, be
}

func browser(path string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	r.Header.Set("Accept", "text/html")
	r.Header.Set("X-Forwarded-Proto", "https")
	r.Header.Set("X-Forwarded-Host", "app.example.com")
	return r
}

func TestYaegiTestDataLoads(t *testing.T) {
	p := plugin(t)
	if p.manifest.BasePkg != "edgepass" || p.manifest.Import != "github.com/edgepass/edgepass/plugin" {
		t.Fatalf("manifest %+v", p.manifest)
	}
	if len(p.manifest.TestData) == 0 {
		t.Fatal(".traefik.yml has no testData")
	}
	cfg := p.decodedConfig(t, p.manifest.TestData)
	for field, want := range map[string]string{"LoginURL": "https://auth.example.com/login", "UserHeader": "X-Auth-User", "CookieName": "edgepass_session"} {
		if got := cfg.FieldByName(field).String(); got != want {
			t.Errorf("%s = %q, want %q", field, got, want)
		}
	}
	if _, err := p.newHandler(http.NotFoundHandler(), p.manifest.TestData, "testData"); err != nil {
		t.Fatalf("New with .traefik.yml testData: %v", err)
	}
}

// Traefik's decoder: keys in any case, slices from comma-separated strings or
// lists, numbers and booleans from strings, nested nats block.
func TestYaegiDecodesConfigLikeTraefik(t *testing.T) {
	cfg := baseConfig()
	cfg["ALLOWEDGROUPS"] = "admins,dev"
	cfg["allowedUsers"] = []any{"alice", "bob"}
	cfg["publicPaths"] = "/healthz"
	cfg["cacheSize"] = "500"
	cfg["removecookie"] = "true"
	cfg["clockSkew"] = 45
	cfg["nats"] = map[string]any{
		"urls": "nats://127.0.0.1:4222,nats://127.0.0.1:4223", "bucket": "edge", "nkeySeed": "SUAX",
		"caFile": "/ca.pem", "insecureSkipVerify": "true", "replicaID": "r1",
	}
	v := plugin(t).decodedConfig(t, cfg)
	check := func(field string, want any) {
		t.Helper()
		got := v
		for _, f := range strings.Split(field, ".") {
			got = got.FieldByName(f)
		}
		if !reflect.DeepEqual(got.Interface(), want) {
			t.Errorf("%s = %#v, want %#v", field, got.Interface(), want)
		}
	}
	check("AllowedGroups", []string{"admins", "dev"})
	check("AllowedUsers", []string{"alice", "bob"})
	check("PublicPaths", []string{"/healthz"})
	check("CacheSize", 500)
	check("RemoveCookie", true)
	check("ClockSkew", "45")
	check("Audience", "edgepass") // default kept
	check("NATS.URLs", []string{"nats://127.0.0.1:4222", "nats://127.0.0.1:4223"})
	check("NATS.Bucket", "edge")
	check("NATS.NKeySeed", "SUAX")
	check("NATS.CAFile", "/ca.pem")
	check("NATS.InsecureSkipVerify", true)
	check("NATS.ReplicaID", "r1")
}

func TestYaegiNewRefusesBadConfig(t *testing.T) {
	tests := []struct {
		name, key string
		value     any
		field     string
	}{
		{"relative loginURL", "loginURL", "/login", "loginURL"},
		{"missing issuer", "issuer", "", "issuer"},
		{"bad jwks", "jwks", "{", "jwks"},
		{"bad clockSkew", "clockSkew", "soon", "clockSkew"},
		{"bad staleAction", "staleAction", "maybe", "staleAction"},
		// Traefik's decoder drops unknown keys; ",remain" collects them, in Yaegi too.
		{"misspelled allowedGroups", "allowedGroup", []any{"admins"}, `unknown setting "allowedGroup"; did you mean "allowedGroups"?`},
		{"misspelled nats setting", "nats", map[string]any{"urls": "nats://127.0.0.1:4222", "pasword": "x"}, `unknown setting "nats.pasword"; did you mean "nats.password"?`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			cfg[tt.key] = tt.value
			_, err := plugin(t).newHandler(http.NotFoundHandler(), cfg, "bad")
			if err == nil || !strings.HasPrefix(err.Error(), "edgepass: "+tt.field) {
				t.Fatalf("err = %v, want one naming %s", err, tt.field)
			}
		})
	}
}

func TestYaegiUnauthenticatedBrowserRedirects(t *testing.T) {
	h, be := handler(t, nil)
	rw := httptest.NewRecorder()
	h.ServeHTTP(rw, browser("/dash?x=1"))
	if rw.Code != http.StatusFound || be.called != 0 {
		t.Fatalf("status %d, next called %d", rw.Code, be.called)
	}
	loc, err := url.Parse(rw.Header().Get("Location"))
	if err != nil || loc.Host != "auth.example.com" || loc.Query().Get("rd") != "https://app.example.com/dash?x=1" {
		t.Fatalf("Location %q", rw.Header().Get("Location"))
	}
}

func TestYaegiUnauthenticatedAPIGets401(t *testing.T) {
	h, be := handler(t, nil)
	r := httptest.NewRequest(http.MethodGet, "/api", nil)
	r.Header.Set("Accept", "application/json")
	rw := httptest.NewRecorder()
	h.ServeHTTP(rw, r)
	if rw.Code != http.StatusUnauthorized || be.called != 0 || rw.Header().Get("WWW-Authenticate") != `Bearer realm="edgepass"` {
		t.Fatalf("status %d, WWW-Authenticate %q", rw.Code, rw.Header().Get("WWW-Authenticate"))
	}
	if strings.TrimSpace(rw.Body.String()) != `{"error":"authentication required"}` {
		t.Fatalf("body %q", rw.Body.String())
	}
}

func TestYaegiValidTokenSetsHeadersAndStripsSpoofed(t *testing.T) {
	h, be := handler(t, func(c map[string]any) { c["stripHeaders"] = "X-Custom-Id" })
	raw := signed(t, claims())
	for round := 0; round < 3; round++ { // first seen, then cached
		r := browser("/")
		r.Header.Set("Cookie", "a=1; edgepass_session="+raw)
		for _, k := range []string{"X-Auth-User", "x_auth_user", "X_AUTH_EMAIL", "Remote-User", "X-Authentik-Username", "X-Forwarded-User", "x_custom_id"} {
			r.Header[k] = []string{"admin"}
		}
		rw := httptest.NewRecorder()
		h.ServeHTTP(rw, r)
		if rw.Code != http.StatusTeapot || be.called != round+1 {
			t.Fatalf("round %d: status %d", round, rw.Code)
		}
		for k, v := range map[string]string{"X-Auth-User": "alice", "X-Auth-Email": "alice@example.com", "X-Auth-Groups": "dev,ops"} {
			if got := be.header[k]; len(got) != 1 || got[0] != v {
				t.Fatalf("round %d: %s = %q", round, k, got)
			}
		}
		for k, v := range be.header {
			if len(v) > 0 && v[0] == "admin" {
				t.Fatalf("round %d: spoofed %s reached the backend", round, k)
			}
		}
	}
	// Bearer works too.
	r := httptest.NewRequest(http.MethodGet, "/api", nil)
	r.Header.Set("Authorization", "Bearer "+raw)
	rw := httptest.NewRecorder()
	h.ServeHTTP(rw, r)
	if rw.Code != http.StatusTeapot {
		t.Fatalf("bearer: status %d", rw.Code)
	}
}

func TestYaegiForbidden(t *testing.T) {
	h, be := handler(t, func(c map[string]any) { c["allowedGroups"] = "admins" })
	r := browser("/")
	r.Header.Set("Cookie", "edgepass_session="+signed(t, claims()))
	rw := httptest.NewRecorder()
	h.ServeHTTP(rw, r)
	if rw.Code != http.StatusForbidden || be.called != 0 || strings.TrimSpace(rw.Body.String()) != `{"error":"forbidden"}` {
		t.Fatalf("status %d body %q", rw.Code, rw.Body.String())
	}
}

func TestYaegiRejectsAttacks(t *testing.T) {
	h, be := handler(t, nil)
	good := strings.Split(signed(t, claims()), ".")
	expired := claims()
	expired.Expiry = time.Now().Unix() - 120
	evil := claims()
	evil.Groups = []string{"admins"}
	evilParts := strings.Split(signed(t, evil), ".")
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"test"}`))
	attacks := map[string]string{
		"expired":   signed(t, expired),
		"tampered":  good[0] + "." + evilParts[1] + "." + good[2],
		"alg none":  none + "." + good[1] + ".",
		"oversized": strings.Repeat("A", token.MaxTokenSize+1),
		"garbage":   "not-a-token",
	}
	for name, raw := range attacks {
		r := httptest.NewRequest(http.MethodGet, "/api", nil)
		r.Header.Set("Cookie", "edgepass_session="+raw)
		rw := httptest.NewRecorder()
		h.ServeHTTP(rw, r)
		if rw.Code != http.StatusUnauthorized || be.called != 0 {
			t.Fatalf("%s: status %d", name, rw.Code)
		}
	}
}

func TestYaegiNewKeepsGoroutinesFlat(t *testing.T) {
	p := plugin(t)
	cfg := baseConfig()
	if _, err := p.newHandler(http.NotFoundHandler(), cfg, "warm"); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	before := runtime.NumGoroutine()
	for i := 0; i < 1000; i++ {
		if _, err := p.newHandler(http.NotFoundHandler(), cfg, "m"+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	time.Sleep(20 * time.Millisecond)
	if after := runtime.NumGoroutine(); after > before {
		t.Fatalf("goroutines %d -> %d after 1000 New under yaegi", before, after)
	}
}

// Paths not on the cached hot path, run under yaegi: cache eviction (sync.Map
// Range with an interpreted callback), public paths, removeCookie, bearer
// tokens and header-line indexing.
func TestYaegiColdPaths(t *testing.T) {
	h, be := handler(t, func(c map[string]any) {
		c["cacheSize"] = "5"
		c["publicPaths"] = "/healthz,/static/*"
		c["removeCookie"] = "true"
	})
	for i := 0; i < 40; i++ {
		c := claims()
		c.SessionID = "session-" + strconv.Itoa(i) + "-0000000000000"
		r := browser("/app")
		r.Header.Set("Cookie", "a=1; edgepass_session="+signed(t, c))
		rw := httptest.NewRecorder()
		h.ServeHTTP(rw, r)
		if rw.Code != http.StatusTeapot {
			t.Fatalf("token %d: status %d", i, rw.Code)
		}
		if got := be.header.Get("Cookie"); got != "a=1" {
			t.Fatalf("removeCookie: backend saw Cookie %q", got)
		}
	}
	for _, p := range []string{"/healthz", "/static/x.css"} {
		r := browser(p)
		r.Header.Set("X-Auth-User", "admin")
		rw := httptest.NewRecorder()
		h.ServeHTTP(rw, r)
		if rw.Code != http.StatusTeapot || be.header.Get("X-Auth-User") != "" {
			t.Fatalf("public %s: status %d, X-Auth-User %q", p, rw.Code, be.header.Get("X-Auth-User"))
		}
	}

	h2, be2 := handler(t, nil)
	raw := signed(t, claims())
	for i := 0; i < 3; i++ {
		r := httptest.NewRequest(http.MethodGet, "/api", nil)
		r.Header.Set("Authorization", "Bearer "+raw)
		rw := httptest.NewRecorder()
		h2.ServeHTTP(rw, r)
		if rw.Code != http.StatusTeapot || be2.header.Get("X-Auth-User") != "alice" {
			t.Fatalf("bearer round %d: status %d", i, rw.Code)
		}
	}
}

// Attack, under yaegi as Traefik runs it: walk out of a public prefix
// ("/static/..;/admin") and smuggle a group through the separator ("x,admins").
func TestYaegiRefusesPublicTraversalAndSeparatorGroups(t *testing.T) {
	h, be := handler(t, func(c map[string]any) { c["publicPaths"] = "/static/*" })
	for _, path := range []string{"/static/..;/admin", "/static/%2e%2e/admin"} {
		rw := httptest.NewRecorder()
		h.ServeHTTP(rw, httptest.NewRequest(http.MethodGet, path, nil))
		if be.called != 0 || rw.Code != http.StatusUnauthorized {
			t.Fatalf("%s: served without a session (status %d)", path, rw.Code)
		}
	}
	rw := httptest.NewRecorder()
	h.ServeHTTP(rw, httptest.NewRequest(http.MethodGet, "/static/app.js", nil))
	if be.called != 1 {
		t.Fatalf("public path refused (status %d)", rw.Code)
	}
	c := claims()
	c.Groups = []string{"dev", "x,admins"}
	r := browser("/")
	r.Header.Set("Cookie", "edgepass_session="+signed(t, c))
	rw = httptest.NewRecorder()
	h.ServeHTTP(rw, r)
	if be.called != 2 || be.header.Get("X-Auth-Groups") != "dev" {
		t.Fatalf("status %d, groups header %q, want %q", rw.Code, be.header.Get("X-Auth-Groups"), "dev")
	}
}

// The line index under yaegi: emptied when full (sync.Map.Clear reached
// through an interface), and the once-a-second ticker drops an expired
// decision (sync.Map.Range with an interpreted callback), after which an
// expired token is refused although its line was on the fast path.
func TestYaegiLineIndexEmptiesWhenFullAndDropsExpired(t *testing.T) {
	h, be := handler(t, func(c map[string]any) {
		c["cacheSize"] = "3"
		c["clockSkew"] = "0s"
	})
	get := func(raw string) int {
		r := browser("/app")
		r.Header.Set("Cookie", "edgepass_session="+raw)
		r.Header.Set("Accept", "application/json")
		rw := httptest.NewRecorder()
		h.ServeHTTP(rw, r)
		return rw.Code
	}
	for i := 0; i < 10; i++ {
		c := claims()
		c.SessionID = "session-" + strconv.Itoa(i) + "-0000000000000"
		raw := signed(t, c)
		for round := 0; round < 2; round++ {
			if code := get(raw); code != http.StatusTeapot || be.header.Get("X-Auth-User") != "alice" {
				t.Fatalf("token %d round %d: status %d", i, round, code)
			}
		}
	}
	c := claims()
	c.Expiry = time.Now().Unix() + 1
	raw := signed(t, c)
	for round := 0; round < 2; round++ {
		if code := get(raw); code != http.StatusTeapot {
			t.Fatalf("short-lived token round %d: status %d", round, code)
		}
	}
	deadline := time.Unix(c.Expiry, 0).Add(3 * time.Second)
	for get(raw) != http.StatusUnauthorized {
		if time.Now().After(deadline) {
			t.Fatal("an expired token was still served well past exp + one tick")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
