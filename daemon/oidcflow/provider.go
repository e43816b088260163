package oidcflow

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// discoveryRetry is how long a failed discovery is remembered before the
// next request tries again, so an IdP outage does not become a request storm.
const discoveryRetry = 2 * time.Second

// discoveryTimeout bounds one discovery attempt.
const discoveryTimeout = 10 * time.Second

// idp is the provider, discovered on first use and retried until it works:
// the daemon starts (and serves /healthz, /verify) while the IdP is down.
type idp struct {
	issuer      string
	clientID    string
	secret      string
	scopes      []string
	redirectURL string
	client      *http.Client
	retryAfter  time.Duration

	mu      sync.Mutex
	ready   *provider
	lastErr error
	lastTry time.Time
}

// provider is what discovery yields.
type provider struct {
	oidc  *oidc.Provider // userinfo
	oauth *oauth2.Config // the authorization URL (and, for the console, its own exchange)
	// verifier, exchanger and refresher are the IdP's answers the callback
	// and refresh rely on; discovery fills them from go-oidc and oauth2,
	// tests put stubs in their place (see stub_test.go).
	verifier   idTokenVerifier
	exchanger  codeExchanger
	refresher  tokenRefresher
	endSession string
	// keys and algs verify back-channel logout tokens (see verifyLogoutToken).
	keys signatureVerifier
	algs []string
}

// idTokenVerifier checks an ID token the IdP issued: its signature
// against the provider's keys, issuer, audience (our client id) and
// expiry. The callback and refresh both verify through it; go-oidc's
// *oidc.IDTokenVerifier implements it.
type idTokenVerifier interface {
	Verify(ctx context.Context, rawIDToken string) (*oidc.IDToken, error)
}

// codeExchanger trades a login's authorization code (with its PKCE
// verifier in opts) for the IdP's tokens; *oauth2.Config implements it.
type codeExchanger interface {
	Exchange(ctx context.Context, code string, opts ...oauth2.AuthCodeOption) (*oauth2.Token, error)
}

// tokenRefresher asks the IdP for fresh tokens with a session's refresh
// token. An *oauth2.RetrieveError with ErrorCode invalid_grant means the
// IdP refuses the token (the user was disabled or signed out there).
type tokenRefresher interface {
	Refresh(ctx context.Context, refreshToken string) (*oauth2.Token, error)
}

// oauthRefresher is the tokenRefresher of an oauth2 client.
type oauthRefresher struct{ cfg *oauth2.Config }

func (o oauthRefresher) Refresh(ctx context.Context, refreshToken string) (*oauth2.Token, error) {
	return o.cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken}).Token()
}

// get returns the discovered provider, running discovery if it has not
// succeeded yet.
func (i *idp) get(ctx context.Context) (*provider, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.ready != nil {
		return i.ready, nil
	}
	if i.lastErr != nil && time.Since(i.lastTry) < i.retryAfter {
		return nil, i.lastErr
	}
	i.lastTry = time.Now()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), discoveryTimeout)
	defer cancel()
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, i.client), i.issuer)
	if err != nil {
		i.lastErr = fmt.Errorf("IdP discovery at %s/.well-known/openid-configuration failed: %w; check --oidc.issuer (it must equal the issuer the IdP announces) and that the IdP is reachable",
			strings.TrimSuffix(i.issuer, "/"), err)
		return nil, i.lastErr
	}
	var meta struct {
		EndSession string   `json:"end_session_endpoint"`
		JWKSURI    string   `json:"jwks_uri"`
		Algs       []string `json:"id_token_signing_alg_values_supported"`
	}
	_ = p.Claims(&meta) // already decoded once by NewProvider; absent fields stay empty
	cfg := &oauth2.Config{
		ClientID:     i.clientID,
		ClientSecret: i.secret,
		Endpoint:     p.Endpoint(),
		RedirectURL:  i.redirectURL,
		Scopes:       i.scopes,
	}
	i.ready = &provider{
		oidc:       p,
		oauth:      cfg,
		verifier:   p.Verifier(&oidc.Config{ClientID: i.clientID}),
		exchanger:  cfg,
		refresher:  oauthRefresher{cfg},
		endSession: meta.EndSession,
		// The key set outlives this request: it refetches the provider's
		// keys on an unknown kid, with the configured HTTP client.
		keys: oidc.NewRemoteKeySet(oidc.ClientContext(context.Background(), i.client), meta.JWKSURI),
		algs: meta.Algs,
	}
	i.lastErr = nil
	return i.ready, nil
}

// current returns the discovered provider without running discovery (nil
// until it has succeeded).
func (i *idp) current() *provider {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.ready
}

// maxDiscoveryDoc bounds what probe reads of the discovery document.
const maxDiscoveryDoc = 1 << 20

// probe fetches the discovery document once more (no caching) and checks
// that it names the configured issuer: whether the IdP answers now.
func (i *idp) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, discoveryTimeout)
	defer cancel()
	where := strings.TrimSuffix(i.issuer, "/") + "/.well-known/openid-configuration"
	fail := func(format string, args ...any) error {
		return fmt.Errorf("IdP at %s does not answer now: %s; new logins fail until it does (sessions, /verify and sign-out keep working)",
			where, fmt.Sprintf(format, args...))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, where, nil)
	if err != nil {
		return fail("%v", err)
	}
	resp, err := i.client.Do(req)
	if err != nil {
		return fail("%v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fail("status %d", resp.StatusCode)
	}
	var doc struct {
		Issuer string `json:"issuer"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxDiscoveryDoc)).Decode(&doc); err != nil {
		return fail("unreadable discovery document: %v", err)
	}
	if doc.Issuer != i.issuer {
		return fail("the document names issuer %q, not %q", doc.Issuer, i.issuer)
	}
	return nil
}

// clientContext makes oauth2 and go-oidc use the configured HTTP client.
func (i *idp) clientContext(ctx context.Context) context.Context {
	ctx = context.WithValue(ctx, oauth2.HTTPClient, i.client)
	return oidc.ClientContext(ctx, i.client)
}
