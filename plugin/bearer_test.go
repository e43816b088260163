package edgepass

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/idptoken"
	"github.com/edgepass/edgepass/plugin/token"
)

const testIdP = "https://idp.example.com"

// One value per declaration: yaegi mishandles blank identifiers in
// package-level multi-value declarations.
var (
	idpKey   = mustRSA()
	idpOther = mustRSA()
)

func mustRSA() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

func rsaJWKS(kid string, k *rsa.PrivateKey) []byte {
	data, _ := json.Marshal(map[string]any{"keys": []any{map[string]any{
		"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": base64.RawURLEncoding.EncodeToString(k.N.Bytes()), "e": "AQAB"}}})
	return data
}

// idpToken is an RS256 access token as a client-credentials grant gives it.
func idpToken(t testing.TB, k *rsa.PrivateKey, mod func(map[string]any)) string {
	t.Helper()
	c := map[string]any{"iss": testIdP, "aud": "machine-api", "sub": "robot", "client_id": "robot", "jti": "jti-robot-1",
		"iat": testNow.Unix() - 10, "exp": testNow.Unix() + 300, "groups": []string{"robots"}, "scope": "machine"}
	if mod != nil {
		mod(c)
	}
	h, _ := json.Marshal(map[string]any{"alg": "RS256", "typ": "at+jwt", "kid": "idp1"})
	p, _ := json.Marshal(c)
	b := base64.RawURLEncoding
	input := b.EncodeToString(h) + "." + b.EncodeToString(p)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b.EncodeToString(sig)
}

// applyIdP applies a keys fact carrying the IdP's keys, signed by anchor.
func applyIdP(t *testing.T, st *edgestate.State, jwks []byte, anchor ed25519.PrivateKey) error {
	t.Helper()
	sessionJWKS, _ := token.NewKeySet(token.Key{ID: "test", Public: testPriv.Public().(ed25519.PublicKey)}).MarshalJWKS()
	factIat++
	v, err := edgestate.SignKeys(edgestate.KeysFact{Iat: factIat, JWKS: sessionJWKS, MaxTokenLifetime: 86400,
		IdP: &edgestate.IdPKeys{Issuer: testIdP, JWKS: jwks, GroupsClaim: []idptoken.ClaimPath{idptoken.DottedPath("groups")},
			UserClaims: []idptoken.ClaimPath{idptoken.DottedPath("preferred_username"), idptoken.DottedPath("email"), idptoken.DottedPath("sub")}}}, anchor)
	if err != nil {
		t.Fatal(err)
	}
	return st.Apply("keys", "", v, 1, testNow)
}

// withBearer is a middleware with edge state and bearer on (compile needs
// nats.urls for it, so the settings are set here).
func withBearer(t *testing.T, edit func(*Config)) (*Middleware, *recorder, *edgestate.State) {
	t.Helper()
	m, rec, _, st := withState(t, edit)
	m.s.idp = &idpSettings{audiences: []string{"machine-api"}}
	if err := applyIdP(t, st, rsaJWKS("idp1", idpKey), testAnchor); err != nil {
		t.Fatal(err)
	}
	return m, rec, st
}

// admittedIdPToken is an IdP access token m has admitted once, so its
// decision is cached when the test changes something.
func admittedIdPToken(t *testing.T, m *Middleware) string {
	t.Helper()
	raw := idpToken(t, idpKey, nil)
	if rw := serve(m, apiRequest("Bearer "+raw)); rw.Code != http.StatusTeapot {
		t.Fatalf("refused: %d %q", rw.Code, challengeOf(rw))
	}
	return raw
}

func TestIdPAccessTokenReachesAPIRoute(t *testing.T) {
	m, rec, _ := withBearer(t, func(c *Config) { c.AllowedGroups = []string{"robots"} })
	raw := idpToken(t, idpKey, nil)
	for i := 0; i < 3; i++ {
		if rw := serve(m, apiRequest("Bearer "+raw)); rw.Code != http.StatusTeapot {
			t.Fatalf("request %d: %d %q", i, rw.Code, challengeOf(rw))
		}
	}
	if rec.header.Get("X-Auth-User") != "robot" || rec.header.Get("X-Auth-Groups") != "robots" || rec.header.Get("X-Auth-Subject") != "robot" {
		t.Fatalf("identity %v", rec.header)
	}
	if rec.header.Get("Authorization") != "" {
		t.Fatal("the backend got the access token")
	}
}

func TestIdPAccessTokenRefusedOnRouteLackingItsGroups(t *testing.T) {
	m, rec, _ := withBearer(t, func(c *Config) { c.AllowedGroups = []string{"admins"} })
	if rw := serve(m, apiRequest("Bearer "+idpToken(t, idpKey, nil))); rw.Code != http.StatusForbidden || rec.called != 0 {
		t.Fatalf("%d", rw.Code)
	}
}

// Expired, foreign-audience and foreign-issuer tokens get a 401 whose
// WWW-Authenticate says why (RFC 6750).
func TestIdPAccessTokenRefusalsSayWhy(t *testing.T) {
	m, _, _ := withBearer(t, nil)
	for _, tc := range []struct {
		name string
		raw  string
		want string
	}{
		{"expired", idpToken(t, idpKey, func(c map[string]any) { c["exp"] = testNow.Unix() - 60 }), "expired"},
		{"wrong audience", idpToken(t, idpKey, func(c map[string]any) { c["aud"] = "billing-api" }), "wrong_audience"},
		// Attack: the IdP's ID token for edgepass, replayed at an API.
		{"id token", idpToken(t, idpKey, func(c map[string]any) { c["aud"] = "edgepass" }), "wrong_audience"},
		{"wrong issuer", idpToken(t, idpKey, func(c map[string]any) { c["iss"] = "https://evil.example.com" }), "wrong_issuer"},
		// Attack: signed by a key that is not the IdP's.
		{"forged", idpToken(t, idpOther, nil), "bad_token"},
	} {
		rw := serve(m, apiRequest("Bearer "+tc.raw))
		want := `Bearer realm="edgepass", error="invalid_token", error_description="` + tc.want + `"`
		if rw.Code != http.StatusUnauthorized || challengeOf(rw) != want {
			t.Errorf("%s: %d %q, want 401 %q", tc.name, rw.Code, challengeOf(rw), want)
		}
	}
}

// Attack: whoever can write the edge bucket publishes their own "IdP keys"
// to mint access tokens: the keys fact must be signed by the trust anchor.
func TestForgedIdPKeysRefused(t *testing.T) {
	m, _, st := withBearer(t, nil)
	rogue := ed25519.NewKeyFromSeed([]byte("rogue-nats-writer-not-the-anchor"))
	if err := applyIdP(t, st, rsaJWKS("idp1", idpOther), rogue); err == nil {
		t.Fatal("a keys fact not signed by the anchor was applied")
	}
	if rw := serve(m, apiRequest("Bearer "+idpToken(t, idpOther, nil))); rw.Code != http.StatusUnauthorized {
		t.Fatalf("token signed with injected keys: %d", rw.Code)
	}
}

// The IdP rotates a key out (or the daemon stops publishing it): cached
// tokens signed with it stop at once.
func TestIdPKeyChangeStopsCachedTokens(t *testing.T) {
	m, _, st := withBearer(t, nil)
	raw := admittedIdPToken(t, m)
	if err := applyIdP(t, st, rsaJWKS("idp2", idpOther), testAnchor); err != nil {
		t.Fatal(err)
	}
	if rw := serve(m, apiRequest("Bearer "+raw)); rw.Code != http.StatusUnauthorized {
		t.Fatalf("token of a key no longer published: %d", rw.Code)
	}
}

// `edgepass users revoke` covers the user's IdP access tokens too (same sub).
func TestUserRevocationCoversIdPAccessTokens(t *testing.T) {
	m, _, st := withBearer(t, nil)
	raw := admittedIdPToken(t, m)
	apply(t, st, "revoke.user."+token.SubjectKey("robot"), "", `{"before":`+strconv.FormatInt(testNow.Unix(), 10)+`}`)
	if rw := serve(m, apiRequest("Bearer "+raw)); rw.Code != http.StatusUnauthorized || !strings.Contains(challengeOf(rw), "user_revoked") {
		t.Fatalf("revoked user's access token: %d %q", rw.Code, challengeOf(rw))
	}
}

// Attack: an access token planted as the session cookie.
func TestIdPAccessTokenNeverAcceptedAsCookie(t *testing.T) {
	m, rec, _ := withBearer(t, nil)
	raw := admittedIdPToken(t, m)
	r := apiRequest("")
	r.Header.Set("Cookie", "edgepass_session="+raw)
	if rw := serve(m, r); rw.Code != http.StatusUnauthorized || rec.called != 1 {
		t.Fatalf("as a cookie: %d", rw.Code)
	}
}

func TestIdPAccessTokenOffByDefault(t *testing.T) {
	m, _, _, st := withState(t, nil)
	if err := applyIdP(t, st, rsaJWKS("idp1", idpKey), testAnchor); err != nil {
		t.Fatal(err)
	}
	if rw := serve(m, apiRequest("Bearer "+idpToken(t, idpKey, nil))); rw.Code != http.StatusUnauthorized {
		t.Fatalf("bearer off: %d", rw.Code)
	}
}

func TestBearerSettings(t *testing.T) {
	checkRefused(t, []refusedSetting{
		{"audiences without enabled", func(c *Config) { c.Bearer.Audiences = []string{"x"} }, "bearer.enabled"},
		{"no audiences", func(c *Config) { withNATS(c); c.Bearer.Enabled = true }, "bearer.audiences"},
		{"session audience", func(c *Config) { withNATS(c); c.Bearer.Enabled = true; c.Bearer.Audiences = []string{"edgepass"} }, "edgepass's own"},
		{"no nats", func(c *Config) { c.Bearer.Enabled = true; c.Bearer.Audiences = []string{"api"} }, "needs nats.urls"},
		{"bad claim", func(c *Config) {
			withNATS(c)
			c.Bearer.Enabled = true
			c.Bearer.Audiences = []string{"api"}
			c.Bearer.GroupsClaim = `a["b"]`
		}, "bearer.groupsClaim"},
		{"misspelled", func(c *Config) { c.Bearer.UnknownSettings = map[string]interface{}{"audience": "x"} }, `did you mean "bearer.audiences"`},
	})
	cfg := testConfig()
	withNATS(cfg)
	cfg.Bearer = BearerConfig{Enabled: true, Audiences: []string{"api"}, GroupsClaim: "realm_access.roles"}
	s, err := compile(cfg)
	if err != nil || s.idp == nil || len(s.idp.groupsClaim) != 1 {
		t.Fatalf("%v %+v", err, s)
	}
}
