package edgepass

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgepass/edgepass/plugin/token"
)

// testJWKS is .traefik.yml's testData key: RFC 8032 test vector 1, kid "test".
const testJWKS = `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"test","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","alg":"EdDSA","use":"sig"}]}`

var (
	testPriv = func() ed25519.PrivateKey {
		seed, _ := hex.DecodeString("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
		return ed25519.NewKeyFromSeed(seed)
	}()
	testNow = time.Unix(1_700_000_000, 0)
	// testAnchor is the daemon's trust anchor in these tests.
	testAnchor = ed25519.NewKeyFromSeed([]byte("edgepass-test-trust-anchor-seed!"))
	// testAnchorText is testAnchor's public key as the trustAnchors setting takes it.
	testAnchorText = token.FormatAnchor(testAnchor.Public().(ed25519.PublicKey))
)

func testConfig() *Config {
	c := CreateConfig()
	c.LoginURL = "https://auth.example.com/login"
	c.Issuer = "https://auth.example.com"
	c.JWKS = testJWKS
	c.UserHeader = "X-Auth-User"
	c.EmailHeader = "X-Auth-Email"
	c.GroupsHeader = "X-Auth-Groups"
	c.NameHeader = "X-Auth-Name"
	c.SubjectHeader = "X-Auth-Subject"
	return c
}

func testClaims() *token.Claims {
	return &token.Claims{
		Issuer:            "https://auth.example.com",
		Audience:          token.Audience{"edgepass"},
		Subject:           "sub-alice",
		SessionID:         "c2Vzc2lvbi1hbGljZS0wMDAx",
		IssuedAt:          testNow.Unix() - 60,
		Expiry:            testNow.Unix() + 3600,
		Email:             "alice@example.com",
		Name:              "Alice Example",
		PreferredUsername: "alice",
		Groups:            []string{"dev", "ops"},
	}
}

func sign(tb testing.TB, c *token.Claims) string {
	tb.Helper()
	raw, err := token.Sign(c, "test", testPriv)
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

// recorder is the next handler: it records what the backend would see.
type recorder struct {
	called int
	header http.Header
}

func (rec *recorder) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	rec.called++
	rec.header = r.Header.Clone()
	rw.WriteHeader(http.StatusTeapot)
}

// clock pins the middleware clock; set moves it and, as the process-wide
// ticker does every second in production, drops expired decisions from the
// line index.
type clock struct {
	t atomic.Int64 // unix nanoseconds: the ticker goroutine reads it too
	m *Middleware
}

func (c *clock) now() time.Time { return time.Unix(0, c.t.Load()) }

func (c *clock) set(t time.Time) {
	c.t.Store(t.UnixNano())
	c.m.lines.group.expire()
}

func newTest(tb testing.TB, edit func(*Config)) (*Middleware, *recorder, *clock) {
	tb.Helper()
	cfg := testConfig()
	if edit != nil {
		edit(cfg)
	}
	rec := &recorder{}
	h, err := New(context.Background(), rec, cfg, "test")
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	m := h.(*Middleware)
	clk := &clock{m: m}
	clk.t.Store(testNow.UnixNano())
	m.clock = clk.now
	return m, rec, clk
}

func browserRequest(target string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.Header.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	return r
}

func withCookie(r *http.Request, raw string) *http.Request {
	r.Header.Add("Cookie", "theme=dark; edgepass_session="+raw+"; other=1")
	return r
}

func serve(m *Middleware, r *http.Request) *httptest.ResponseRecorder {
	rw := httptest.NewRecorder()
	m.ServeHTTP(rw, r)
	return rw
}
