// Package idpkeys fetches the identity provider's signing keys (its
// discovery document's jwks_uri) for the edges: the daemon publishes them,
// with its claim mapping (oidc.groupsClaim, oidc.userClaims,
// oidc.groupsInclude), inside the anchor-signed keys fact, so edges can
// verify the IdP's JWT access tokens (middleware setting bearer) without
// any I/O of their own and without trusting whoever can write NATS.
package idpkeys

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgepass/edgepass/daemon/claimpath"
	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/idptoken"
	"github.com/edgepass/edgepass/plugin/token"
)

// Refresh timing: the keys are fetched again every RefreshEvery, and after
// a failure at the next maintenance tick.
const (
	RefreshEvery = 5 * time.Minute
	maxBody      = 1 << 20
)

// Options configure a Fetcher.
type Options struct {
	// Issuer is oidc.issuer.
	Issuer string
	// GroupsClaim, UserClaims and GroupsInclude are the login's mapping
	// (claim paths in package claimpath's syntax).
	GroupsClaim   []string
	UserClaims    []string
	GroupsInclude []string
	// Client fetches (default: 10s timeout).
	Client *http.Client
	Logger *slog.Logger
	// Skew tolerates clock differences when the daemon verifies an access
	// token itself (minting an assertion for it).
	Skew time.Duration
	Now  func() time.Time
}

// Fetcher keeps the IdP's current keys.
type Fetcher struct {
	o       Options
	mapping idptoken.Mapping
	groups  []idptoken.ClaimPath
	users   []idptoken.ClaimPath

	mu       sync.Mutex
	cur      atomic.Pointer[edgestate.IdPKeys]
	keys     atomic.Pointer[idptoken.Keys]
	fetched  time.Time
	failedAt time.Time
}

// New compiles the claim paths.
func New(o Options) (*Fetcher, error) {
	if o.Issuer == "" {
		return nil, errors.New("idpkeys: no issuer")
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	f := &Fetcher{o: o}
	var err error
	if f.groups, err = compile(o.GroupsClaim); err != nil {
		return nil, fmt.Errorf("idpkeys: oidc.groupsClaim: %w", err)
	}
	if f.users, err = compile(o.UserClaims); err != nil {
		return nil, fmt.Errorf("idpkeys: oidc.userClaims: %w", err)
	}
	f.mapping = idptoken.Mapping{Groups: f.groups, Users: f.users, Include: o.GroupsInclude}
	return f, nil
}

// compile turns claimpath paths into the edge's compiled form.
func compile(paths []string) ([]idptoken.ClaimPath, error) {
	var out []idptoken.ClaimPath
	for _, s := range paths {
		p, err := claimpath.Parse(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p.Compiled())
	}
	return out, nil
}

// Current is the fact to publish (nil until a fetch succeeded).
func (f *Fetcher) Current() *edgestate.IdPKeys { return f.cur.Load() }

// Due reports whether Refresh should run now.
func (f *Fetcher) Due() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.o.Now()
	return f.fetched.IsZero() || now.Sub(f.fetched) >= RefreshEvery || (!f.failedAt.IsZero() && f.failedAt.After(f.fetched))
}

// Refresh fetches the discovery document and the JWKS; changed reports
// keys (or mapping) different from the ones held.
func (f *Fetcher) Refresh(ctx context.Context) (changed bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer func() {
		if err != nil {
			f.failedAt = f.o.Now()
		}
	}()
	var disc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := f.getJSON(ctx, strings.TrimSuffix(f.o.Issuer, "/")+"/.well-known/openid-configuration", &disc); err != nil {
		return false, err
	}
	if disc.Issuer != f.o.Issuer {
		return false, fmt.Errorf("idpkeys: discovery names issuer %q, oidc.issuer is %q", disc.Issuer, f.o.Issuer)
	}
	if disc.JWKSURI == "" || (!strings.HasPrefix(disc.JWKSURI, "https://") && !strings.HasPrefix(f.o.Issuer, "http://")) {
		return false, fmt.Errorf("idpkeys: discovery has no usable jwks_uri (%q)", disc.JWKSURI)
	}
	var raw json.RawMessage
	if err := f.getJSON(ctx, disc.JWKSURI, &raw); err != nil {
		return false, err
	}
	keys, err := idptoken.ParseJWKS(raw)
	if err != nil {
		return false, fmt.Errorf("idpkeys: %s: %w", disc.JWKSURI, err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		return false, err
	}
	next := &edgestate.IdPKeys{Issuer: f.o.Issuer, JWKS: compact.Bytes(), GroupsClaim: f.groups, UserClaims: f.users, GroupsInclude: f.o.GroupsInclude}
	f.fetched = f.o.Now()
	old := f.cur.Load()
	if old != nil {
		a, _ := json.Marshal(old)
		b, _ := json.Marshal(next)
		if bytes.Equal(a, b) {
			return false, nil
		}
	}
	f.cur.Store(next)
	f.keys.Store(keys)
	f.o.Logger.Info("IdP signing keys fetched for the edges (bearer access tokens)", "issuer", f.o.Issuer, "keys", keys.Len())
	return true, nil
}

func (f *Fetcher) getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("idpkeys: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := f.o.Client.Do(req)
	if err != nil {
		return fmt.Errorf("idpkeys: GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("idpkeys: GET %s: %s", url, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("idpkeys: GET %s: %w", url, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("idpkeys: GET %s: %w", url, err)
	}
	return nil
}

// VerifyAccessToken checks an IdP access token an edge presents for an
// identity assertion (the edge checked its audience against the route)
// and maps it like the edge does. It implements minter.IdPVerifier.
func (f *Fetcher) VerifyAccessToken(raw string, now time.Time) (*token.Claims, error) {
	keys := f.keys.Load()
	if keys == nil {
		return nil, errors.New("idpkeys: no IdP keys yet")
	}
	claims, err := idptoken.Verify(raw, keys, idptoken.Options{Issuer: f.o.Issuer, NoAudience: true, Skew: f.o.Skew}, now)
	if err != nil {
		return nil, err // idptoken's errors are token's: the minter tells expiry apart
	}
	return f.mapping.Identity(claims).Claims(), nil
}
