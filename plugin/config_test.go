package edgepass

import (
	"context"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/plugin/token"
)

func TestCreateConfigDefaults(t *testing.T) {
	c := CreateConfig()
	want := &Config{
		Audience: "edgepass", CookieName: "edgepass_session", ClockSkew: "30s", GroupsSeparator: ",",
		CacheSize: 10000, StaleAction: "serve", NATS: NATSConfig{Bucket: "edgepass_edge"},
		// Fail closed by default: backends never get the session credential,
		// and an edge that never synced refuses instead of guessing.
		RemoveCookie: true, RequireSync: true, LogLevel: "info",
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("CreateConfig = %+v\nwant %+v", c, want)
	}
}

// withNATS gives c a NATS server where nothing listens (the watcher retries
// in the background) and the test trust anchor: what settings that need the
// edge state take to compile.
func withNATS(c *Config) {
	c.NATS.URLs = []string{"nats://127.0.0.1:1"}
	c.TrustAnchors = []string{testAnchorText}
}

// refusedSetting is a configuration compile refuses: edit applied to
// testConfig, and a part of the error that says why.
type refusedSetting struct {
	name string
	edit func(*Config)
	want string
}

// checkRefused reports each case compile accepts, or refuses for another reason.
func checkRefused(t *testing.T, cases []refusedSetting) {
	t.Helper()
	for _, tc := range cases {
		cfg := testConfig()
		tc.edit(cfg)
		if _, err := compile(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(c *Config)
		field string
	}{
		{"missing loginURL", func(c *Config) { c.LoginURL = "" }, "loginURL"},
		{"relative loginURL", func(c *Config) { c.LoginURL = "/login" }, "loginURL"},
		{"javascript loginURL", func(c *Config) { c.LoginURL = "javascript:alert(1)" }, "loginURL"},
		{"ftp loginURL", func(c *Config) { c.LoginURL = "ftp://auth.example.com/login" }, "loginURL"},
		{"loginURL with userinfo", func(c *Config) { c.LoginURL = "https://user@auth.example.com/login" }, "loginURL"},
		{"loginURL with fragment", func(c *Config) { c.LoginURL = "https://auth.example.com/login#x" }, "loginURL"},
		{"missing issuer", func(c *Config) { c.Issuer = " " }, "issuer"},
		{"no jwks and no nats", func(c *Config) { c.JWKS = "" }, "jwks"},
		{"jwks not JSON", func(c *Config) { c.JWKS = "{" }, "jwks"},
		{"jwks without Ed25519 keys", func(c *Config) { c.JWKS = `{"keys":[{"kty":"RSA","kid":"r"}]}` }, "jwks"},
		{"bad clockSkew", func(c *Config) { c.ClockSkew = "soon" }, "clockSkew"},
		{"negative clockSkew", func(c *Config) { c.ClockSkew = "-5s" }, "clockSkew"},
		{"huge clockSkew", func(c *Config) { c.ClockSkew = "48h" }, "clockSkew"},
		// Attack: with a skew past the revocation grace, a revoked token is
		// accepted again once the edge pruned its revocation.
		{"clockSkew past the revocation grace", func(c *Config) { c.ClockSkew = "6m" }, "clockSkew"},
		{"bad cookie name", func(c *Config) { c.CookieName = "a b" }, "cookieName"},
		{"negative cacheSize", func(c *Config) { c.CacheSize = -1 }, "cacheSize"},
		{"huge cacheSize", func(c *Config) { c.CacheSize = 1 << 30 }, "cacheSize"},
		{"bad staleAction", func(c *Config) { c.StaleAction = "panic" }, "staleAction"},
		{"bad maxStaleness", func(c *Config) { c.MaxStaleness = "a while" }, "maxStaleness"},
		{"maxStaleness without nats", func(c *Config) { c.MaxStaleness = "1m" }, "maxStaleness"},
		{"maxStaleness below the idle heartbeat", func(c *Config) {
			c.NATS.URLs = []string{"nats://127.0.0.1:4222"}
			c.TrustAnchors = []string{testAnchorText}
			c.MaxStaleness = "5s"
		}, "maxStaleness"},
		// Attack: an edge on NATS without a trust anchor would take any keys
		// fact a writer of the edge bucket puts there.
		{"nats without trustAnchors", func(c *Config) { c.NATS.URLs = []string{"nats://127.0.0.1:4222"} }, "trustAnchors: required with nats.urls"},
		{"bad trustAnchors", func(c *Config) {
			c.NATS.URLs = []string{"nats://127.0.0.1:4222"}
			c.TrustAnchors = []string{"not-a-key"}
		}, "trustAnchors"},
		{"public path without slash", func(c *Config) { c.PublicPaths = []string{"health"} }, "publicPaths"},
		{"bad header name", func(c *Config) { c.UserHeader = "X User" }, "userHeader"},
		{"identity in Authorization", func(c *Config) { c.EmailHeader = "authorization" }, "emailHeader"},
		{"identity in Cookie", func(c *Config) { c.NameHeader = "Cookie" }, "nameHeader"},
		{"same header twice", func(c *Config) { c.NameHeader = "x_auth_user" }, "nameHeader"},
		{"bad strip header", func(c *Config) { c.StripHeaders = []string{"X:Y"} }, "stripHeaders"},
		{"strip Host", func(c *Config) { c.StripHeaders = []string{"host"} }, "stripHeaders"},
		{"bad email domain", func(c *Config) { c.AllowedEmailDomains = []string{"a@b.com"} }, "allowedEmailDomains"},
		{"bad nats url", func(c *Config) {
			c.JWKS = ""
			c.TrustAnchors = []string{testAnchorText}
			c.NATS.URLs = []string{"http://nats.example.com"}
		}, "nats"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			tt.edit(cfg)
			h, err := New(context.Background(), http.NotFoundHandler(), cfg, "x")
			if err == nil {
				t.Fatalf("New accepted the config: %T", h)
			}
			if !strings.HasPrefix(err.Error(), "edgepass: "+tt.field) {
				t.Fatalf("error %q does not name field %s", err, tt.field)
			}
		})
	}
	if _, err := New(context.Background(), http.NotFoundHandler(), nil, "x"); err == nil {
		t.Fatal("nil config accepted")
	}
	if _, err := New(context.Background(), nil, testConfig(), "x"); err == nil {
		t.Fatal("nil next accepted")
	}
}

// A configuration with several mistakes is refused once, naming each, so
// fixing it takes one reload instead of one per mistake.
func TestNewReportsEveryProblem(t *testing.T) {
	cfg := testConfig()
	cfg.LoginURL = ""
	cfg.ClockSkew = "soon"
	cfg.PublicPaths = []string{"health", "/ok", "metrics"}
	cfg.UserHeader = "X User"
	cfg.CacheSize = -1
	cfg.StaleAction = "panic"
	_, err := New(context.Background(), http.NotFoundHandler(), cfg, "x")
	if err == nil {
		t.Fatal("New accepted the config")
	}
	for _, want := range []string{"edgepass: loginURL:", "edgepass: clockSkew:", `edgepass: publicPaths: "health"`,
		`edgepass: publicPaths: "metrics"`, "userHeader", "edgepass: cacheSize:", "edgepass: staleAction:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
	if !strings.HasPrefix(err.Error(), "edgepass: loginURL:") {
		t.Errorf("error does not start with the first problem: %v", err)
	}
}

func TestNewNormalizesConfig(t *testing.T) {
	cfg := testConfig()
	cfg.ClockSkew = "45" // weakly typed `clockSkew: 45`
	cfg.AllowedGroups = []string{" admins , dev", ""}
	cfg.AllowedEmailDomains = []string{"@Example.COM"}
	cfg.PublicPaths = []string{"/health", "/static/*"}
	cfg.StripHeaders = []string{"X-Custom-Identity", "X-Tenant-*"}
	cfg.GroupsSeparator = ""
	cfg.CacheSize = 0
	cfg.LoginURL = "https://auth.example.com/login?tenant=a"
	h, err := New(context.Background(), http.NotFoundHandler(), cfg, "x")
	if err != nil {
		t.Fatal(err)
	}
	s := h.(*Middleware).s
	if s.verifier.Skew != 45*time.Second {
		t.Errorf("skew = %v", s.verifier.Skew)
	}
	admin := &token.Claims{Subject: "s", Email: "x@other.org"}
	if !s.pol.Admits(admin, []string{"admins"}) || !s.pol.Admits(admin, []string{"dev"}) || s.pol.Admits(admin, []string{"ops"}) {
		t.Error("groups not admitted as configured")
	}
	if !s.pol.Admits(&token.Claims{Subject: "s", Email: "bob@EXAMPLE.com"}, nil) {
		t.Error("email domain not admitted")
	}
	if !s.publicExact["/health"] || len(s.publicPrefix) != 1 || s.publicPrefix[0] != "/static/" {
		t.Errorf("public = %v %v", s.publicExact, s.publicPrefix)
	}
	if s.cacheSize != defaultCacheSize {
		t.Errorf("cacheSize %d", s.cacheSize)
	}
	if s.loginPrefix != "https://auth.example.com/login?tenant=a&rd=" {
		t.Errorf("loginPrefix = %q", s.loginPrefix)
	}
	if s.pol.IdentityNames[0] != "X-Auth-User" {
		t.Errorf("identity names = %v", s.pol.IdentityNames)
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{"", 0, false}, {"30s", 30 * time.Second, false}, {"30", 30 * time.Second, false}, {" 1m ", time.Minute, false},
		{"0", 0, false}, {"-1", 0, true}, {"x", 0, true}, {"1h30m", 90 * time.Minute, false},
	}
	for _, tt := range tests {
		got, err := parseDuration(tt.in, "")
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("parseDuration(%q) = %v, %v", tt.in, got, err)
		}
	}
}

// Attack (self-inflicted DoS): staleAction=refuse without maxStaleness made
// every request whose NATS state was not heard within the same second a 503.
func TestRefuseWithoutMaxStalenessIsAConfigError(t *testing.T) {
	for _, stale := range []string{"", "0", "0s"} {
		cfg := testConfig()
		cfg.NATS.URLs = []string{"nats://127.0.0.1:4222"}
		cfg.TrustAnchors = []string{testAnchorText}
		cfg.StaleAction = "refuse"
		cfg.MaxStaleness = stale
		if _, err := compile(cfg); err == nil || !strings.Contains(err.Error(), "maxStaleness") {
			t.Fatalf("maxStaleness %q: err = %v, want a maxStaleness error", stale, err)
		}
	}
	cfg := testConfig()
	cfg.NATS.URLs = []string{"nats://127.0.0.1:4222"}
	cfg.TrustAnchors = []string{testAnchorText}
	cfg.StaleAction = "refuse"
	cfg.MaxStaleness = "2m"
	if s, err := compile(cfg); err != nil || !s.refuseStale || s.maxStaleSec != 120 {
		t.Fatalf("valid refuse config: %v", err)
	}
}
