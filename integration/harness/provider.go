package harness

import (
	"context"
	"fmt"
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
	req, err := http.NewRequest(http.MethodPost, p.Issuer+"/test/logout-token-omit", strings.NewReader(url.Values{"omit": {strings.Join(claims, ",")}}.Encode()))
	if err != nil {
		return err
	}
	req.SetBasicAuth("edgepass", p.clientSecret)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("harness: provider: set logout token mode: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("harness: provider: set logout token mode: %s", resp.Status)
	}
	return nil
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
		return httpOK(ctx, issuer+"/.well-known/openid-configuration", nil)
	})
	if err != nil {
		return nil, err
	}
	return &Provider{Proc: p, Issuer: issuer, clientSecret: s.ClientSecret}, nil
}

// httpOK GETs url and wants a 200.
func httpOK(ctx context.Context, url string, header http.Header) error {
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
