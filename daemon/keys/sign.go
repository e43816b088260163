package keys

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/edgepass/edgepass/daemon/session"
	"github.com/edgepass/edgepass/plugin/token"
)

// Sign issues the session token of s: iss = Options.Issuer, aud = edgepass,
// sid, sub, iat, exp and the identity claims. It records the signing key in
// s.KeyID, so revoking that key can end the session. It implements
// oidcflow.Signer.
func (r *Ring) Sign(s *session.Session) (string, error) {
	if s == nil {
		return "", errors.New("keys: sign: nil session")
	}
	c := &token.Claims{
		Issuer:            r.o.Issuer,
		Audience:          token.Audience{Audience},
		Subject:           s.Subject,
		SessionID:         s.ID,
		IssuedAt:          s.IssuedAt.Unix(),
		Expiry:            s.ExpiresAt.Unix(),
		Email:             s.Email,
		Name:              s.Name,
		PreferredUsername: s.Username,
		Groups:            s.Groups,
	}
	raw, kid, err := r.SignClaims(c)
	if err != nil {
		return "", err
	}
	s.KeyID = kid
	return raw, nil
}

// KeyIDOf returns the kid named in a token's header, unverified ("" when
// unreadable): callers that signed the token record it (session.Session.KeyID).
func KeyIDOf(raw string) string {
	hdr, _, ok := strings.Cut(raw, ".")
	if !ok || len(hdr) > 512 {
		return ""
	}
	data, err := base64.RawURLEncoding.DecodeString(hdr)
	if err != nil {
		return ""
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if json.Unmarshal(data, &h) != nil {
		return ""
	}
	return h.Kid
}

// Verifier checks tokens this daemon issued (issuer, audience, skew).
func (r *Ring) Verifier() *token.Verifier {
	return &token.Verifier{Issuer: r.o.Issuer, Audience: Audience, Skew: r.o.ClockSkew}
}

// SessionID returns the sid of a token this daemon signed, checking the
// signature, issuer and audience but accepting an expired token, so signing
// out with an old cookie still ends the stored session. It implements
// oidcflow.TokenVerifier.
func (r *Ring) SessionID(raw string) (string, error) {
	if len(raw) > token.MaxTokenSize {
		return "", token.ErrTooLarge
	}
	// Verify at the token's own iat, when it was valid; the claims Verify
	// returns are authenticated by the signature, the unverified read only
	// picks the instant.
	at := r.o.Now()
	if parts := strings.Split(raw, "."); len(parts) == 3 {
		if payload, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
			var c struct {
				Iat int64 `json:"iat"`
				Exp int64 `json:"exp"`
			}
			if json.Unmarshal(payload, &c) == nil && c.Iat > 0 && c.Exp > 0 && time.Unix(c.Exp, 0).Before(at) {
				at = time.Unix(c.Iat, 0)
			}
		}
	}
	c, err := r.Verifier().Verify(raw, r.PublicKeys(), at)
	if err != nil {
		return "", fmt.Errorf("keys: session token: %w", err)
	}
	if c.SessionID == "" {
		return "", fmt.Errorf("keys: session token: %w: no sid", token.ErrMalformed)
	}
	return c.SessionID, nil
}
