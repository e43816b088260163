package oidcflow

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// logoutToken is a verified back-channel logout token (OIDC Back-Channel
// Logout 1.0 section 2.4): who to sign out, and the claims that bound its
// reuse.
type logoutToken struct {
	Issuer    string
	Subject   string // may be empty when SessionID is set
	SessionID string // may be empty when Subject is set
	TokenID   string
	IssuedAt  time.Time
	// Omitted lists the optional-in-practice claims the provider left out
	// ("exp", "sub"), for a one-time note in the log.
	Omitted []string
}

// signatureVerifier checks a JWS against the provider's keys and returns its
// payload (go-oidc's RemoteKeySet); a one-method seam so tests need no IdP.
type signatureVerifier interface {
	VerifySignature(ctx context.Context, jwt string) ([]byte, error)
}

// logoutClaims are the members of a logout token edgepass reads.
type logoutClaims struct {
	Issuer    string                     `json:"iss"`
	Subject   string                     `json:"sub"`
	Audience  json.RawMessage            `json:"aud"`
	IssuedAt  *json.Number               `json:"iat"`
	Expiry    *json.Number               `json:"exp"`
	TokenID   string                     `json:"jti"`
	SessionID string                     `json:"sid"`
	Nonce     json.RawMessage            `json:"nonce"`
	Events    map[string]json.RawMessage `json:"events"`
}

// verifyLogoutToken makes every check of Back-Channel Logout 1.0 section 2.6
// except one: a token without exp is accepted. The current spec requires
// exp, but certified providers (and older Authentik releases) omit it, and
// refusing their tokens loses the logout — the user stays signed in at every
// edge. Replay stays bounded without exp: iat must be recent
// (logoutTokenMaxAge) and each jti is used once. An exp that is present must
// not be past.
func verifyLogoutToken(ctx context.Context, keys signatureVerifier, algs []string, issuer, clientID, raw string, now time.Time) (*logoutToken, error) {
	if raw == "" || len(raw) > maxFormBody {
		return nil, errors.New("logout token is empty or too large")
	}
	alg, err := jwsAlg(raw)
	if err != nil {
		return nil, err
	}
	if len(algs) == 0 {
		algs = []string{"RS256"} // the one algorithm every provider must support
	}
	if alg == "none" || !slices.Contains(algs, alg) {
		return nil, fmt.Errorf("logout token signed with %q; the provider announces %q", alg, algs)
	}
	payload, err := keys.VerifySignature(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("logout token signature: %w", err)
	}
	var c logoutClaims
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("logout token claims: %w", err)
	}
	if c.Issuer != issuer {
		return nil, fmt.Errorf("logout token issued by %q, want %q", c.Issuer, issuer)
	}
	aud, err := audiences(c.Audience)
	if err != nil || !slices.Contains(aud, clientID) {
		return nil, fmt.Errorf("logout token audience %q does not name client %q", aud, clientID)
	}
	ev := bytes.TrimSpace(c.Events[backchannelEvent])
	if len(ev) == 0 || ev[0] != '{' {
		return nil, fmt.Errorf("logout token: events[%q] is missing or not a JSON object", backchannelEvent)
	}
	if len(c.Nonce) != 0 {
		return nil, errors.New("logout token carries a nonce (an ID token replayed as a logout token?)")
	}
	if c.TokenID == "" {
		return nil, errors.New("logout token has no jti")
	}
	if c.Subject == "" && c.SessionID == "" {
		return nil, errors.New("logout token names neither sub nor sid")
	}
	lt := &logoutToken{Issuer: c.Issuer, Subject: c.Subject, SessionID: c.SessionID, TokenID: c.TokenID}
	if c.IssuedAt == nil {
		return nil, errors.New("logout token has no iat")
	}
	iat, err := unixTime(*c.IssuedAt)
	if err != nil {
		return nil, fmt.Errorf("logout token iat: %w", err)
	}
	lt.IssuedAt = iat
	if iat.After(now.Add(logoutTokenSkew)) {
		return nil, fmt.Errorf("logout token iat %s is in the future", iat.UTC().Format(time.RFC3339))
	}
	if now.Sub(iat) > logoutTokenMaxAge {
		return nil, fmt.Errorf("logout token iat %s is older than %s", iat.UTC().Format(time.RFC3339), logoutTokenMaxAge)
	}
	if c.Expiry == nil {
		lt.Omitted = append(lt.Omitted, "exp")
	} else {
		exp, err := unixTime(*c.Expiry)
		if err != nil {
			return nil, fmt.Errorf("logout token exp: %w", err)
		}
		if now.After(exp.Add(logoutTokenSkew)) {
			return nil, fmt.Errorf("logout token expired at %s", exp.UTC().Format(time.RFC3339))
		}
	}
	if c.Subject == "" {
		lt.Omitted = append(lt.Omitted, "sub")
	}
	return lt, nil
}

// jwsAlg reads the alg of a compact JWS header without trusting anything else.
func jwsAlg(raw string) (string, error) {
	if strings.Count(raw, ".") != 2 {
		return "", errors.New("logout token is not a compact JWS")
	}
	hdr, err := base64.RawURLEncoding.DecodeString(raw[:strings.IndexByte(raw, '.')])
	if err != nil {
		return "", fmt.Errorf("logout token header: %w", err)
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(hdr, &h); err != nil {
		return "", fmt.Errorf("logout token header: %w", err)
	}
	return h.Alg, nil
}

// audiences reads aud as a string or an array of strings.
func audiences(raw json.RawMessage) ([]string, error) {
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, errors.New("aud must be a string or an array of strings")
	}
	return many, nil
}

// unixTime reads a NumericDate (seconds, possibly fractional).
func unixTime(n json.Number) (time.Time, error) {
	f, err := n.Float64()
	if err != nil || f <= 0 || f > 1e11 {
		return time.Time{}, fmt.Errorf("%q is not a positive NumericDate", n.String())
	}
	return time.Unix(int64(f), 0), nil
}
