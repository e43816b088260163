package harness

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Machine clients of the test provider (client credentials): their access
// tokens are RS256 JWTs with aud MachineAudience and their groups.
const (
	RobotClient    = "robot"     // groups: robots
	OpsRobotClient = "ops-robot" // groups: robots, admins
	// MachineResource is the resource indicator the robots' tokens are for.
	MachineResource = "https://machine-api.edgepass.test"
)

// ClientCredentialsToken gets an access token for client (RobotClient,
// OpsRobotClient) with the client-credentials grant, as a script would.
func (p *Provider) ClientCredentialsToken(client string) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"machine"}, "resource": {MachineResource}}
	resp, body, err := p.postForm("/token", client, form)
	if err != nil {
		return "", fmt.Errorf("harness: provider: client credentials: %w", err)
	}
	var t struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &t) != nil || t.AccessToken == "" {
		return "", fmt.Errorf("harness: provider: client credentials for %s: %s %.300s", client, resp.Status, body)
	}
	return t.AccessToken, nil
}

// SignedAccessToken asks the test provider to sign an access token with
// chosen claims (its /test/access-token): sub, aud, groups and a life of
// expIn seconds (negative: already expired).
func (p *Provider) SignedAccessToken(sub, aud string, groups []string, expIn int) (string, error) {
	form := url.Values{"sub": {sub}, "aud": {aud}, "groups": {strings.Join(groups, ",")}, "exp_in": {strconv.Itoa(expIn)}}
	resp, body, err := p.postForm("/test/access-token", daemonClient, form)
	if err != nil {
		return "", fmt.Errorf("harness: provider: sign an access token: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("harness: provider: sign an access token: %s %.200s", resp.Status, body)
	}
	return strings.TrimSpace(string(body)), nil
}
