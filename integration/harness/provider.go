package harness

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Demo users of the test OIDC provider (integration/oidcprovider/server.js).
const (
	AliceUser     = "alice"
	AlicePassword = "alice-password"
	AliceEmail    = "alice@example.com"
	AliceName     = "Alice Example"
	BobUser       = "bob"
	BobPassword   = "bob-password"
	BobEmail      = "bob@example.com"
	BobName       = "Bob Example"
)

// daemonClient is the daemon's client id at the provider, whose secret
// (ProviderSpec.ClientSecret) also guards the provider's /test endpoints.
const daemonClient = "edgepass"

// AliceGroups and BobGroups are the users' groups at the provider.
var (
	AliceGroups = []string{"staff", "admins"}
	BobGroups   = []string{"staff"}
)

// ProviderSpec configures the test OIDC provider.
type ProviderSpec struct {
	Node, Dir              string // node executable, integration/oidcprovider
	Port                   int
	ClientSecret           string
	RedirectURIs           []string
	PostLogoutRedirectURIs []string
	BackchannelLogoutURI   string
	LogDir                 string
	Name                   string // default "oidcprovider"
}

// Provider is a running OIDC provider.
type Provider struct {
	*Proc
	Issuer       string
	clientSecret string
}

// SetLogoutTokenOmit makes the provider leave claims ("exp", "sub") out of
// its back-channel logout tokens, as some certified providers do; none
// restores its normal tokens.
func (p *Provider) SetLogoutTokenOmit(claims ...string) error {
	resp, _, err := p.postForm("/test/logout-token-omit", daemonClient, url.Values{"omit": {strings.Join(claims, ",")}})
	if err != nil {
		return fmt.Errorf("harness: provider: set logout token mode: %w", err)
	}
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("harness: provider: set logout token mode: %s", resp.Status)
	}
	return nil
}

// postForm POSTs form to the provider's path as client (HTTP Basic with the
// client secret) and returns the response with its body (up to 1 MiB).
func (p *Provider) postForm(path, client string, form url.Values) (*http.Response, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, p.Issuer+path, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, nil, err
	}
	req.SetBasicAuth(client, p.clientSecret)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, body, err
}

// StartProvider starts the provider and waits until its discovery document is
// served.
func StartProvider(s ProviderSpec) (*Provider, error) {
	if s.Name == "" {
		s.Name = "oidcprovider"
	}
	issuer := baseURL(s.Port)
	p, err := startReady(ProcSpec{
		Name: s.Name,
		Path: s.Node,
		Args: []string{"server.js"},
		Dir:  s.Dir,
		Env: []string{
			"PORT=" + strconv.Itoa(s.Port),
			"CLIENT_SECRET=" + s.ClientSecret,
			"REDIRECT_URIS=" + strings.Join(s.RedirectURIs, ","),
			"POST_LOGOUT_REDIRECT_URIS=" + strings.Join(s.PostLogoutRedirectURIs, ","),
			"BACKCHANNEL_LOGOUT_URI=" + s.BackchannelLogoutURI,
			"DEBUG=",
		},
		LogPath: filepath.Join(s.LogDir, s.Name+".log"),
	}, []int{s.Port}, hostPort(s.Port), 20*time.Second, func(ctx context.Context) error {
		return HTTPOK(ctx, issuer+"/.well-known/openid-configuration", nil)
	})
	if err != nil {
		return nil, err
	}
	return &Provider{Proc: p, Issuer: issuer, clientSecret: s.ClientSecret}, nil
}

// HTTPOK GETs url with header (nil: none) and wants a 200.
func HTTPOK(ctx context.Context, url string, header http.Header) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
