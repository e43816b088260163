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
	oidc       *oidc.Provider
	oauth      *oauth2.Config
	verifier   *oidc.IDTokenVerifier
	endSession string
	// keys and algs verify back-channel logout tokens (see verifyLogoutToken).
	keys signatureVerifier
	algs []string
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
	i.ready = &provider{
		oidc: p,
		oauth: &oauth2.Config{
			ClientID:     i.clientID,
			ClientSecret: i.secret,
			Endpoint:     p.Endpoint(),
			RedirectURL:  i.redirectURL,
			Scopes:       i.scopes,
		},
		verifier:   p.Verifier(&oidc.Config{ClientID: i.clientID}),
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
