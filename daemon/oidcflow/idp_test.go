package oidcflow

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/session"
	"github.com/edgepass/edgepass/plugin/token"
)

// testIdP is an in-process OpenID provider: discovery, JWKS, /authorize
// (redirects straight back with a code), /token (code + PKCE, refresh),
// /userinfo and /end_session. Its knobs let tests make it misbehave.
type testIdP struct {
	t      *testing.T
	srv    *httptest.Server
	key    *rsa.PrivateKey
	kid    string
	client string
	secret string

	mu sync.Mutex
	// identity served for the next logins
	sub      string
	idClaims map[string]any // extra ID token claims (sid, groups, ...)
	userinfo map[string]any // userinfo claims besides sub
	// misbehaviour
	down          bool
	tokenIssuer   string          // "" = the real issuer
	tokenAudience string          // "" = the client id
	nonceOverride *string         // replace the nonce in the ID token
	signWith      *rsa.PrivateKey // sign ID tokens with another key
	noEndSession  bool
	reusableCodes bool           // a sloppy IdP accepting a code twice
	refreshFails  bool           // refresh answers invalid_grant
	refreshHold   *barrier       // holds refresh requests until they meet
	refreshClaims map[string]any // claims of ID tokens issued on refresh
	// records
	codes          map[string]grant
	access         map[string]string // access token -> sub
	refresh        map[string]string // refresh token -> sub
	authorizeQuery url.Values
	refreshCount   int
}

type grant struct {
	nonce, challenge, redirectURI, sub string
}

func newTestIdP(t *testing.T) *testIdP {
	t.Helper()
	key := idpKey(t)
	p := &testIdP{
		t: t, key: key, kid: "k1", client: "edgepass", secret: "s3cret",
		sub:      "user-1",
		idClaims: map[string]any{"sid": "idp-sid-1", "preferred_username": "alice", "email": "alice@example.com", "name": "Alice", "groups": []any{"staff", "admins"}},
		userinfo: map[string]any{},
		codes:    map[string]grant{}, access: map[string]string{}, refresh: map[string]string{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET /jwks", p.jwks)
	mux.HandleFunc("GET /authorize", p.authorize)
	mux.HandleFunc("POST /token", p.token)
	mux.HandleFunc("GET /userinfo", p.userinfoHandler)
	mux.HandleFunc("GET /end_session", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

var (
	keysOnce sync.Once
	keys     [2]*rsa.PrivateKey
)

// idpKey and otherKey are RSA keys generated once per test binary.
func idpKey(t *testing.T) *rsa.PrivateKey   { return testKeys(t)[0] }
func otherKey(t *testing.T) *rsa.PrivateKey { return testKeys(t)[1] }

func testKeys(t *testing.T) [2]*rsa.PrivateKey {
	keysOnce.Do(func() {
		for i := range keys {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			keys[i] = k
		}
	})
	return keys
}

func (p *testIdP) issuer() string { return p.srv.URL }

func (p *testIdP) set(f func(p *testIdP)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

func (p *testIdP) discovery(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	m := map[string]any{
		"issuer":                                p.issuer(),
		"authorization_endpoint":                p.issuer() + "/authorize",
		"token_endpoint":                        p.issuer() + "/token",
		"jwks_uri":                              p.issuer() + "/jwks",
		"userinfo_endpoint":                     p.issuer() + "/userinfo",
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"code_challenge_methods_supported":      []string{"S256"},
		"backchannel_logout_supported":          true,
	}
	if !p.noEndSession {
		m["end_session_endpoint"] = p.issuer() + "/end_session"
	}
	writeJSON(w, m)
}

func (p *testIdP) jwks(w http.ResponseWriter, r *http.Request) {
	pub := p.key.PublicKey
	writeJSON(w, map[string]any{"keys": []any{map[string]any{
		"kty": "RSA", "kid": p.kid, "alg": "RS256", "use": "sig",
		"n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes()),
	}}})
}

func (p *testIdP) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.authorizeQuery = q
	if q.Get("response_type") != "code" || q.Get("client_id") != p.client ||
		q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("state") == "" {
		http.Error(w, "bad authorize request", http.StatusBadRequest)
		return
	}
	code := rand.Text()
	p.codes[code] = grant{nonce: q.Get("nonce"), challenge: q.Get("code_challenge"), redirectURI: q.Get("redirect_uri"), sub: p.sub}
	u, _ := url.Parse(q.Get("redirect_uri"))
	v := url.Values{"code": {code}, "state": {q.Get("state")}}
	u.RawQuery = v.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func (p *testIdP) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, "invalid_request")
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != p.client || secret != p.secret {
		w.WriteHeader(http.StatusUnauthorized)
		writeJSON(w, map[string]string{"error": "invalid_client"})
		return
	}
	p.mu.Lock()
	hold := p.refreshHold
	p.mu.Unlock()
	if hold != nil && r.PostForm.Get("grant_type") == "refresh_token" {
		hold.wait()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		g, ok := p.codes[r.PostForm.Get("code")]
		if !p.reusableCodes {
			delete(p.codes, r.PostForm.Get("code"))
		}
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if !ok || b64(sum[:]) != g.challenge || r.PostForm.Get("redirect_uri") != g.redirectURI {
			oauthError(w, "invalid_grant")
			return
		}
		claims := map[string]any{}
		for k, v := range p.idClaims {
			claims[k] = v
		}
		claims["nonce"] = g.nonce
		if p.nonceOverride != nil {
			claims["nonce"] = *p.nonceOverride
		}
		p.issueTokens(w, g.sub, claims)
	case "refresh_token":
		p.refreshCount++
		sub, ok := p.refresh[r.PostForm.Get("refresh_token")]
		if !ok || p.refreshFails {
			oauthError(w, "invalid_grant")
			return
		}
		delete(p.refresh, r.PostForm.Get("refresh_token")) // rotation
		claims := map[string]any{}
		for k, v := range p.refreshClaims {
			claims[k] = v
		}
		p.issueTokens(w, sub, claims)
	default:
		oauthError(w, "unsupported_grant_type")
	}
}

// barrier holds each caller until n have arrived or timeout has passed, to
// make concurrent requests overlap.
type barrier struct {
	mu      sync.Mutex
	n       int
	arrived int
	met     chan struct{}
	timeout time.Duration
}

func newBarrier(n int, timeout time.Duration) *barrier {
	return &barrier{n: n, met: make(chan struct{}), timeout: timeout}
}

func (b *barrier) wait() {
	b.mu.Lock()
	b.arrived++
	if b.arrived == b.n {
		close(b.met)
	}
	b.mu.Unlock()
	select {
	case <-b.met:
	case <-time.After(b.timeout):
	}
}

// issueTokens answers a token request; p.mu is held.
func (p *testIdP) issueTokens(w http.ResponseWriter, sub string, claims map[string]any) {
	at, rt := rand.Text(), rand.Text()
	p.access[at] = sub
	p.refresh[rt] = sub
	now := time.Now()
	claims["iss"] = p.issuer()
	if p.tokenIssuer != "" {
		claims["iss"] = p.tokenIssuer
	}
	claims["aud"] = p.client
	if p.tokenAudience != "" {
		claims["aud"] = p.tokenAudience
	}
	claims["sub"] = sub
	claims["iat"] = now.Unix()
	claims["exp"] = now.Add(5 * time.Minute).Unix()
	key := p.key
	if p.signWith != nil {
		key = p.signWith
	}
	writeJSON(w, map[string]any{
		"access_token": at, "token_type": "Bearer", "expires_in": 300,
		"refresh_token": rt, "id_token": signRS256(p.t, key, p.kid, claims),
	})
}

func (p *testIdP) userinfoHandler(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	sub, ok := p.access[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
	if !ok {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	m := map[string]any{"sub": sub}
	for k, v := range p.userinfo {
		m[k] = v
	}
	writeJSON(w, m)
}

// logoutToken signs a back-channel logout token; mod edits the claims.
func (p *testIdP) logoutToken(mod func(c map[string]any)) string {
	now := time.Now()
	c := map[string]any{
		"iss": p.issuer(), "aud": p.client, "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
		"jti":    rand.Text(),
		"sub":    p.sub,
		"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}},
	}
	if mod != nil {
		mod(c)
	}
	return signRS256(p.t, p.key, p.kid, c)
}

func signRS256(t *testing.T, key *rsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	h, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": kid})
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	input := b64(h) + "." + b64(c)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64(sig)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func oauthError(w http.ResponseWriter, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code})
}

// ---- fakes of the core's interfaces ----

// fakeSigner makes "fake.<base64 claims>.sig" tokens whose size grows with
// the groups like a real JWS; fakeSigner.SessionID reads them back.
type fakeSigner struct{}

type fakeClaims struct {
	Sid    string   `json:"sid"`
	Sub    string   `json:"sub"`
	Exp    int64    `json:"exp"`
	Groups []string `json:"groups"`
}

func (fakeSigner) Sign(s *session.Session) (string, error) {
	b, _ := json.Marshal(fakeClaims{Sid: s.ID, Sub: s.Subject, Exp: s.ExpiresAt.Unix(), Groups: s.Groups})
	tok := "fake." + b64(b) + ".sig"
	if len(tok) > token.MaxTokenSize {
		// Like keys.Ring: the real signer refuses tokens that cannot be a cookie.
		return "", fmt.Errorf("sign: %w", token.ErrTooLarge)
	}
	return tok, nil
}

func (fakeSigner) SessionID(raw string) (string, error) {
	c, err := decodeFake(raw)
	if err != nil {
		return "", err
	}
	return c.Sid, nil
}

func decodeFake(raw string) (*fakeClaims, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 || parts[0] != "fake" || parts[2] != "sig" {
		return nil, errors.New("bad signature")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, err
	}
	var c fakeClaims
	return &c, json.Unmarshal(b, &c)
}

type revokedSession struct {
	sid string
	exp time.Time
}

type fakeEdge struct {
	mu       sync.Mutex
	sessions []revokedSession
	users    map[string]time.Time
	groups   map[string][]string
	fail     bool
}

func newFakeEdge() *fakeEdge {
	return &fakeEdge{users: map[string]time.Time{}, groups: map[string][]string{}}
}

// record makes one change under the lock, or fails as NATS does when
// fail is set.
func (e *fakeEdge) record(change func()) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fail {
		return errors.New("nats down")
	}
	change()
	return nil
}

func (e *fakeEdge) RevokeSession(_ context.Context, sid string, exp time.Time) error {
	return e.record(func() { e.sessions = append(e.sessions, revokedSession{sid, exp}) })
}

func (e *fakeEdge) RevokeUser(_ context.Context, sub string, before time.Time) error {
	return e.record(func() { e.users[sub] = before })
}

func (e *fakeEdge) SetGroups(_ context.Context, sub string, groups []string) error {
	return e.record(func() { e.groups[sub] = groups })
}

func (e *fakeEdge) revokedSIDs() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, r := range e.sessions {
		out = append(out, r.sid)
	}
	return out
}

type fakeOverrides map[string][]string

func (f fakeOverrides) GroupsOverride(_ context.Context, sub string) ([]string, bool, error) {
	g, ok := f[sub]
	return g, ok, nil
}

type fakeMetrics struct {
	mu       sync.Mutex
	logins   int
	failures map[string]int
	revoked  map[string]int
	capped   map[string]int
}

func newFakeMetrics() *fakeMetrics {
	return &fakeMetrics{failures: map[string]int{}, revoked: map[string]int{}, capped: map[string]int{}}
}

func (m *fakeMetrics) GroupsCapped(limit string) { m.mu.Lock(); m.capped[limit]++; m.mu.Unlock() }

func (m *fakeMetrics) LoginSucceeded() { m.mu.Lock(); m.logins++; m.mu.Unlock() }
func (m *fakeMetrics) LoginFailed(r string) {
	m.mu.Lock()
	m.failures[r]++
	m.mu.Unlock()
}
func (m *fakeMetrics) Revoked(k string) { m.mu.Lock(); m.revoked[k]++; m.mu.Unlock() }

func (m *fakeMetrics) failure(r string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.failures[r]
}
