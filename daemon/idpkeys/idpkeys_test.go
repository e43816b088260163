package idpkeys

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/token"
)

func TestRefreshPublishesKeysAndMappingAndVerifies(t *testing.T) {
	_, k1, _ := ed25519.GenerateKey(rand.Reader)
	var current atomic.Value
	current.Store(k1)
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			_ = json.NewEncoder(w).Encode(map[string]string{"issuer": srv.URL, "jwks_uri": srv.URL + "/jwks"})
		case "/jwks":
			k := current.Load().(ed25519.PrivateKey)
			_ = json.NewEncoder(w).Encode(map[string]any{"keys": []any{map[string]string{"kty": "OKP", "crv": "Ed25519", "kid": "k",
				"x": base64.RawURLEncoding.EncodeToString(k.Public().(ed25519.PublicKey))}}})
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	f, err := New(Options{Issuer: srv.URL, GroupsClaim: []string{"groups", `resource_access["api"].roles`}, UserClaims: []string{"preferred_username", "sub"}})
	if err != nil {
		t.Fatal(err)
	}
	if !f.Due() || f.Current() != nil {
		t.Fatal("a new fetcher has keys")
	}
	changed, err := f.Refresh(context.Background())
	if err != nil || !changed {
		t.Fatalf("first refresh: %v %v", changed, err)
	}
	cur := f.Current()
	if cur.Issuer != srv.URL || len(cur.GroupsClaim) != 2 || !cur.GroupsClaim[0].Literal || cur.GroupsClaim[1].Literal ||
		strings.Join(cur.GroupsClaim[1].Segs, "/") != "resource_access/api/roles" {
		t.Fatalf("fact %+v", cur)
	}
	if changed, err := f.Refresh(context.Background()); err != nil || changed {
		t.Fatalf("unchanged keys reported as a change: %v %v", changed, err)
	}
	// The IdP rotates.
	_, k2, _ := ed25519.GenerateKey(rand.Reader)
	current.Store(k2)
	if changed, err := f.Refresh(context.Background()); err != nil || !changed {
		t.Fatalf("rotation not seen: %v %v", changed, err)
	}
	// The fact the edges get is accepted by edgestate when signed.
	anchor := ed25519.NewKeyFromSeed(make([]byte, 32))
	jwks, _ := token.NewKeySet(token.Key{ID: "s", Public: anchor.Public().(ed25519.PublicKey)}).MarshalJWKS()
	v, err := edgestate.SignKeys(edgestate.KeysFact{Iat: 1, JWKS: jwks, MaxTokenLifetime: 60, IdP: f.Current()}, anchor)
	if err != nil {
		t.Fatal(err)
	}
	st := edgestate.NewWithAnchors(token.NewKeySet(token.Key{ID: token.AnchorID(anchor.Public().(ed25519.PublicKey)), Public: anchor.Public().(ed25519.PublicKey)}))
	if err := st.Apply("keys", "", v, 1, time.Now()); err != nil || st.IdP() == nil || st.IdP().Issuer != srv.URL {
		t.Fatalf("edge: %v %+v", err, st.IdP())
	}
	// The daemon verifies an access token itself (for an assertion).
	now := time.Now()
	tok := sign(t, k2, map[string]any{"iss": srv.URL, "sub": "robot", "aud": "api", "iat": now.Unix(), "exp": now.Unix() + 60,
		"resource_access": map[string]any{"api": map[string]any{"roles": []string{"reader"}}}})
	c, err := f.VerifyAccessToken(tok, now)
	if err != nil || c.Subject != "robot" || strings.Join(c.Groups, ",") != "reader" || c.PreferredUsername != "robot" {
		t.Fatalf("VerifyAccessToken: %v %+v", err, c)
	}
	old := sign(t, k1, map[string]any{"iss": srv.URL, "sub": "robot", "aud": "api", "iat": now.Unix(), "exp": now.Unix() + 60})
	if _, err := f.VerifyAccessToken(old, now); err == nil {
		t.Fatal("a token of the rotated-out key verified")
	}
	expired := sign(t, k2, map[string]any{"iss": srv.URL, "sub": "robot", "aud": "api", "iat": now.Unix() - 600, "exp": now.Unix() - 300})
	if _, err := f.VerifyAccessToken(expired, now); !errors.Is(err, token.ErrExpired) {
		t.Fatalf("expired: %v", err)
	}
}

func TestRefreshRefusesAnotherIssuer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": "https://evil.example.com", "jwks_uri": "https://evil.example.com/jwks"})
	}))
	defer srv.Close()
	f, _ := New(Options{Issuer: srv.URL, GroupsClaim: []string{"groups"}, UserClaims: []string{"sub"}})
	if _, err := f.Refresh(context.Background()); err == nil || f.Current() != nil {
		t.Fatalf("discovery for another issuer taken: %v", err)
	}
	if !f.Due() {
		t.Fatal("a failed refresh is not retried")
	}
}

func sign(t *testing.T, k ed25519.PrivateKey, claims map[string]any) string {
	t.Helper()
	b := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]string{"alg": "EdDSA", "typ": "at+jwt", "kid": "k"})
	p, _ := json.Marshal(claims)
	input := b.EncodeToString(h) + "." + b.EncodeToString(p)
	return input + "." + b.EncodeToString(ed25519.Sign(k, []byte(input)))
}
