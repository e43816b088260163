package admin

import (
	"crypto/ed25519"
	"crypto/rand"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/servicetoken"
	"github.com/edgepass/edgepass/daemon/session"
	"github.com/edgepass/edgepass/plugin/token"
)

type tokenSigner struct{ priv ed25519.PrivateKey }

func (s tokenSigner) SignClaims(c *token.Claims) (string, string, error) {
	raw, err := token.Sign(c, "kidB", s.priv)
	return raw, "kidB", err
}

// withServiceTokens rebuilds the fixture's handler with the service-token routes.
func withServiceTokens(t *testing.T, f *fixture) {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	m, err := servicetoken.New(servicetoken.Options{Issuer: "https://auth.example.com", Signer: tokenSigner{priv}, Store: f.store,
		MaxLifetime: f.keys.Horizon, Revoker: session.Revoker{Edge: f.edge, Store: f.store}, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Options{Token: testToken, Store: f.store, Edge: f.edge, Keys: f.keys, Edges: fakeEdges{}, ServiceTokens: m})
	if err != nil {
		t.Fatal(err)
	}
	f.srv.Config.Handler = h
}

func TestServiceTokensAPI(t *testing.T) {
	f := newFixture(t)
	if r := f.do(t, "GET", "/api/v1/service-tokens", "Bearer "+testToken, ""); r.status != http.StatusNotFound {
		t.Fatalf("without ServiceTokens: %d", r.status)
	}
	withServiceTokens(t, f)
	r := f.do(t, "POST", "/api/v1/service-tokens", "Bearer "+testToken, `{"name":"billing-sync","groups":["billing"],"expiresIn":"2h","audiences":["billing"]}`)
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	var c servicetoken.Created
	r.json(t, &c)
	if c.Token == "" || c.Subject != "service:billing-sync" || !c.ExpiresAt.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("created %+v", c)
	}
	// Listed with the sessions and on its own, never with the token.
	for _, path := range []string{"/api/v1/service-tokens", "/api/v1/sessions"} {
		r = f.do(t, "GET", path, "Bearer "+testToken, "")
		if r.status != http.StatusOK || !strings.Contains(string(r.body), c.ID) || strings.Contains(string(r.body), c.Token) || !strings.Contains(string(r.body), `"kind": "service"`) {
			t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
	}
	var l ServiceTokenList
	f.do(t, "GET", "/api/v1/service-tokens", "Bearer "+testToken, "").json(t, &l)
	if len(l.Tokens) != 1 {
		t.Fatalf("service tokens listed: %d (browser sessions must not be)", len(l.Tokens))
	}
	// Refused input says why.
	r = f.do(t, "POST", "/api/v1/service-tokens", "Bearer "+testToken, `{"name":"x","audiences":["a"],"expiresIn":"48h"}`)
	if r.status != http.StatusBadRequest || !strings.Contains(r.errorMsg(t), "at most 12h") {
		t.Fatalf("too long: %d %s", r.status, r.body)
	}
	r = f.do(t, "POST", "/api/v1/service-tokens", "Bearer "+testToken, `{"name":"x","audiences":["a"],"scope":"all"}`)
	if r.status != http.StatusBadRequest {
		t.Fatalf("unknown field: %d %s", r.status, r.body)
	}
	// Revoke: a session revocation at every edge, until the token's exp.
	r = f.do(t, "DELETE", "/api/v1/service-tokens/"+c.ID, "Bearer "+testToken, "")
	if r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	f.edge.mu.Lock()
	calls := f.edge.calls
	f.edge.mu.Unlock()
	if len(calls) != 1 || calls[0].op != "session" || calls[0].key != c.ID || !calls[0].t.Equal(c.ExpiresAt) {
		t.Fatalf("edge calls %+v", calls)
	}
	if r := f.do(t, "DELETE", "/api/v1/service-tokens/"+c.ID, "Bearer "+testToken, ""); r.status != http.StatusNotFound {
		t.Fatalf("second revoke: %d", r.status)
	}
	// A browser session is not revoked through this route.
	if r := f.do(t, "DELETE", "/api/v1/service-tokens/sid-a1", "Bearer "+testToken, ""); r.status != http.StatusNotFound {
		t.Fatalf("browser session through service-tokens: %d", r.status)
	}
	if r := f.do(t, "POST", "/api/v1/service-tokens", "", `{}`); r.status != http.StatusUnauthorized {
		t.Fatalf("without the admin token: %d", r.status)
	}
}
