package oidcflow

import (
	"context"
	"crypto"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/edgepass/edgepass/daemon/session"
)

// The callback and refresh ask the IdP through the provider's seams
// (idTokenVerifier, codeExchanger, tokenRefresher). stubEnv sets a provider
// of stubs in place of discovery, so they run without a fake IdP: no
// server, no HTTP, each answer chosen by the test.

// stubIssuer is the stub IdP's issuer; nothing ever connects to it.
const stubIssuer = "https://idp.invalid"

// verifierFunc is an idTokenVerifier answering with a function.
type verifierFunc func(ctx context.Context, raw string) (*oidc.IDToken, error)

func (f verifierFunc) Verify(ctx context.Context, raw string) (*oidc.IDToken, error) {
	return f(ctx, raw)
}

// exchangerFunc is a codeExchanger answering with a function.
type exchangerFunc func(ctx context.Context, code string) (*oauth2.Token, error)

func (f exchangerFunc) Exchange(ctx context.Context, code string, _ ...oauth2.AuthCodeOption) (*oauth2.Token, error) {
	return f(ctx, code)
}

// refresherFunc is a tokenRefresher answering with a function.
type refresherFunc func(ctx context.Context, refreshToken string) (*oauth2.Token, error)

func (f refresherFunc) Refresh(ctx context.Context, refreshToken string) (*oauth2.Token, error) {
	return f(ctx, refreshToken)
}

// stubEnv is a handler whose IdP is p: its verifier checks ID tokens
// signed with idpKey (go-oidc's verifier over a static key set, so claims
// decode as from a real IdP); tests replace the verifier, exchanger and
// refresher. The provider has no userinfo endpoint.
type stubEnv struct {
	fakes
	h *Handler
	p *provider
}

func newStubEnv(t *testing.T, mod func(o *Options)) *stubEnv {
	t.Helper()
	e := &stubEnv{fakes: newFakes()}
	h, o := e.handler(t, Options{
		PublicURL:       "https://auth.example.com",
		Issuer:          stubIssuer,
		ClientID:        "edgepass",
		Lifetime:        time.Hour,
		RefreshInterval: 5 * time.Minute,
		AllowedDomains:  []string{"app.example.com"},
		DefaultRedirect: "https://app.example.com/",
	}, mod)
	unexpected := errors.New("unexpected call to the stub IdP")
	e.p = &provider{
		oidc: (&oidc.ProviderConfig{IssuerURL: stubIssuer, AuthURL: stubIssuer + "/authorize", TokenURL: stubIssuer + "/token"}).
			NewProvider(context.Background()),
		oauth: &oauth2.Config{
			ClientID:    o.ClientID,
			Endpoint:    oauth2.Endpoint{AuthURL: stubIssuer + "/authorize", TokenURL: stubIssuer + "/token"},
			RedirectURL: o.PublicURL + "/callback",
			Scopes:      []string{"openid"},
		},
		verifier: oidc.NewVerifier(stubIssuer, &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{&idpKey(t).PublicKey}},
			&oidc.Config{ClientID: o.ClientID}),
		exchanger: exchangerFunc(func(context.Context, string) (*oauth2.Token, error) {
			t.Error(unexpected)
			return nil, unexpected
		}),
		refresher: refresherFunc(func(context.Context, string) (*oauth2.Token, error) {
			t.Error(unexpected)
			return nil, unexpected
		}),
	}
	h.idp.ready = e.p // discovered, as far as the handler knows
	e.h = h
	return e
}

// idToken is an ID token for sub as the stub IdP issues it (signed with
// idpKey, valid for five minutes), with claims added.
func idToken(t *testing.T, sub, nonce string, claims map[string]any) string {
	t.Helper()
	c := map[string]any{"iss": stubIssuer, "aud": "edgepass", "sub": sub, "nonce": nonce,
		"iat": time.Now().Unix(), "exp": time.Now().Add(5 * time.Minute).Unix()}
	for k, v := range claims {
		c[k] = v
	}
	return signRS256(t, idpKey(t), "k1", c)
}

// tokenResponse is the token endpoint's answer: fresh tokens, with rawID
// as the id_token unless it is "".
func tokenResponse(rawID string) *oauth2.Token {
	tok := &oauth2.Token{AccessToken: "access-2", TokenType: "Bearer", RefreshToken: "refresh-2"}
	if rawID == "" {
		return tok
	}
	return tok.WithExtra(map[string]any{"id_token": rawID})
}

// startLogin runs /login and returns the cookies it set and the state and
// nonce it sent the browser to the IdP with.
func (e *stubEnv) startLogin(t *testing.T) (cookies []*http.Cookie, state, nonce string) {
	t.Helper()
	rec := httptest.NewRecorder()
	e.h.login(rec, httptest.NewRequest(http.MethodGet, "https://auth.example.com/login?rd="+url.QueryEscape("https://app.example.com/wiki"), nil))
	resp := rec.Result()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("/login: status %d, want 302", resp.StatusCode)
	}
	auth, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	q := auth.Query()
	return resp.Cookies(), q.Get("state"), q.Get("nonce")
}

// callback runs /callback?state=&code= with the login's cookies.
func (e *stubEnv) callback(t *testing.T, cookies []*http.Cookie, state, code string) *http.Response {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "https://auth.example.com/callback?"+url.Values{"state": {state}, "code": {code}}.Encode(), nil)
	for _, c := range cookies {
		r.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	e.h.callback(rec, r)
	return rec.Result()
}

// sessions returns the stored sessions.
func (e *stubEnv) sessions(t *testing.T) []session.Session {
	t.Helper()
	all, err := e.store.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return all
}
