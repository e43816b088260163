// Package token signs and verifies edgepass session tokens: compact JWS with
// EdDSA (Ed25519) only, verified against a set of public keys (JWKS).
//
// It runs inside Traefik, so it is Go that Yaegi v0.16.1 runs
// (docs/architecture.md, I1): no generics, and no decoding through JSON
// methods of its own types (wireClaims).
package token

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// MaxTokenSize bounds a raw token so one token fits in one cookie; larger input is
// refused before any decoding so it cannot cost CPU or memory.
const MaxTokenSize = 4096

// Sentinel errors; every error Verify returns wraps exactly one of them so callers
// can branch with errors.Is without parsing messages.
var (
	ErrTooLarge    = errors.New("token: too large")
	ErrMalformed   = errors.New("token: malformed")
	ErrAlgorithm   = errors.New("token: algorithm not allowed")
	ErrUnknownKey  = errors.New("token: unknown key id")
	ErrSignature   = errors.New("token: bad signature")
	ErrExpired     = errors.New("token: expired")
	ErrNotYetValid = errors.New("token: not yet valid")
	ErrIssuer      = errors.New("token: wrong issuer")
	ErrAudience    = errors.New("token: wrong audience")
	// ErrNoKeys is returned by ParseJWKS when no key in the set is a usable Ed25519 key.
	ErrNoKeys = errors.New("token: no usable Ed25519 key")
)

// b64 refuses padding and non-canonical trailing bits, so one signature has one
// encoding (no malleable variants of the same token).
var b64 = base64.RawURLEncoding.Strict()

// Audience is the aud claim; JSON input may be a string or an array of strings.
type Audience []string

// Contains reports whether want is one of the audiences.
func (a Audience) Contains(want string) bool {
	for _, s := range a {
		if s == want {
			return true
		}
	}
	return false
}

// MarshalJSON writes a single audience as a string, as most JWT consumers expect.
func (a Audience) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

// UnmarshalJSON accepts a string or an array of strings. Native callers
// only: under Yaegi encoding/json cannot call it, so Verify decodes
// wireClaims (docs/architecture.md, I1).
//
//yaegicheck:ignore native only: the plugin decodes claims through wireClaims
func (a *Audience) UnmarshalJSON(data []byte) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	out, err := audienceFrom(v)
	if err != nil {
		return err
	}
	*a = out
	return nil
}

// Claims are the session facts the daemon signs and the edge trusts.
type Claims struct {
	Issuer            string   `json:"iss,omitempty"`
	Subject           string   `json:"sub,omitempty"`
	SessionID         string   `json:"sid,omitempty"`
	Email             string   `json:"email,omitempty"`
	Name              string   `json:"name,omitempty"`
	PreferredUsername string   `json:"preferred_username,omitempty"`
	Audience          Audience `json:"aud,omitempty"`
	IssuedAt          int64    `json:"iat,omitempty"`
	NotBefore         int64    `json:"nbf,omitempty"`
	Expiry            int64    `json:"exp,omitempty"`
	Groups            []string `json:"groups,omitempty"`
	// ServiceAudiences is a service token's scope (claim svc_aud): the
	// audiences of the middlewares that may accept it. Empty for sessions.
	ServiceAudiences []string `json:"svc_aud,omitempty"`
}

// ServiceAudience is the aud of service tokens (machine credentials the
// daemon issues): never the session audience, so a middleware (or an older
// edge) that does not accept service tokens refuses them, and never a
// backend's audience, so no backend takes one for an identity assertion.
const ServiceAudience = "edgepass-service"

// SessionAudience is the default audience of session tokens (policy's
// DefaultAudience): the one name assertions and service tokens never carry.
const SessionAudience = "edgepass"

// ServiceSubjectPrefix starts the sub of every service token.
const ServiceSubjectPrefix = "service:"

// wireClaims is the on-the-wire form; aud is decoded as any because Yaegi
// cannot call Audience.UnmarshalJSON (docs/architecture.md, I1).
type wireClaims struct {
	Iss    string   `json:"iss,omitempty"`
	Sub    string   `json:"sub,omitempty"`
	Aud    any      `json:"aud,omitempty"`
	Sid    string   `json:"sid,omitempty"`
	Iat    int64    `json:"iat,omitempty"`
	Nbf    int64    `json:"nbf,omitempty"`
	Exp    int64    `json:"exp,omitempty"`
	Email  string   `json:"email,omitempty"`
	Name   string   `json:"name,omitempty"`
	User   string   `json:"preferred_username,omitempty"`
	Groups []string `json:"groups,omitempty"`
	SvcAud []string `json:"svc_aud,omitempty"`
}

type wireHeader struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
	Kid string `json:"kid"`
}

func audienceFrom(v any) (Audience, error) {
	switch t := v.(type) {
	case nil:
		return nil, nil
	case string:
		return Audience{t}, nil
	case []any:
		out := make(Audience, 0, len(t))
		for _, e := range t {
			s, ok := e.(string)
			if !ok {
				return nil, errors.New("aud array must hold strings")
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, errors.New("aud must be a string or an array of strings")
}

// Sign encodes c as a compact JWS signed with priv; it refuses a result larger than
// MaxTokenSize (ErrTooLarge) so the caller can trim groups instead of minting a
// cookie the edge would refuse.
func Sign(c *Claims, kid string, priv ed25519.PrivateKey) (string, error) {
	if c == nil {
		return "", errors.New("token: sign: nil claims")
	}
	if len(priv) != ed25519.PrivateKeySize {
		return "", fmt.Errorf("token: sign: private key has %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	if kid == "" {
		return "", errors.New("token: sign: empty key id")
	}
	w := wireClaims{
		Iss: c.Issuer, Sub: c.Subject, Sid: c.SessionID,
		Iat: c.IssuedAt, Nbf: c.NotBefore, Exp: c.Expiry,
		Email: c.Email, Name: c.Name, User: c.PreferredUsername, Groups: c.Groups, SvcAud: c.ServiceAudiences,
	}
	if len(c.Audience) == 1 {
		w.Aud = c.Audience[0]
	} else if len(c.Audience) > 1 {
		w.Aud = []string(c.Audience)
	}
	payload, err := json.Marshal(w)
	if err != nil {
		return "", fmt.Errorf("token: sign: claims: %w", err)
	}
	out, err := signCompact(wireHeader{Alg: "EdDSA", Typ: "JWT", Kid: kid}, payload, priv)
	if err != nil {
		return "", fmt.Errorf("token: sign: %w", err)
	}
	if len(out) > MaxTokenSize {
		return "", fmt.Errorf("%w: signed token is %d bytes, limit %d; send fewer groups", ErrTooLarge, len(out), MaxTokenSize)
	}
	return out, nil
}

// Verifier holds what a token must match besides its signature. An empty Issuer or
// Audience is not checked; Skew is the clock tolerance for exp, nbf and iat.
type Verifier struct {
	Issuer   string
	Audience string
	Skew     time.Duration
}

// Verify checks raw completely (size, shape, header, key, signature, times, issuer,
// audience) and returns its claims; every failure wraps one sentinel error.
func (v *Verifier) Verify(raw string, keys *KeySet, now time.Time) (*Claims, error) {
	if len(raw) > MaxTokenSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(raw), MaxTokenSize)
	}
	if strings.Count(raw, ".") != 2 {
		return nil, fmt.Errorf("%w: want 3 dot-separated segments", ErrMalformed)
	}
	// The base64 decoder silently skips CR and LF; refuse them so one token has one spelling.
	if strings.ContainsAny(raw, "\r\n") {
		return nil, fmt.Errorf("%w: line break in token", ErrMalformed)
	}
	h, payloadSeg, sigSeg, signed, err := openCompact(raw)
	if err != nil {
		return nil, err
	}
	if h.Typ != "" && !strings.EqualFold(h.Typ, "JWT") {
		return nil, fmt.Errorf("%w: header: typ %q", ErrMalformed, h.Typ)
	}
	if h.Kid == "" {
		return nil, fmt.Errorf("%w: header: missing kid", ErrMalformed)
	}
	pub, ok := keys.Lookup(h.Kid)
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownKey, h.Kid)
	}
	payload, err := sealedPayload(pub, payloadSeg, sigSeg, signed)
	if err != nil {
		return nil, err
	}
	var w wireClaims
	if err := json.Unmarshal(payload, &w); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	aud, err := audienceFrom(w.Aud)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	c := &Claims{
		Issuer: w.Iss, Subject: w.Sub, SessionID: w.Sid, Audience: aud,
		IssuedAt: w.Iat, NotBefore: w.Nbf, Expiry: w.Exp,
		Email: w.Email, Name: w.Name, PreferredUsername: w.User, Groups: w.Groups, ServiceAudiences: w.SvcAud,
	}
	if c.Subject == "" {
		return nil, fmt.Errorf("%w: missing sub", ErrMalformed)
	}
	if c.Expiry <= 0 {
		return nil, fmt.Errorf("%w: missing exp", ErrMalformed)
	}
	if c.IssuedAt <= 0 {
		return nil, fmt.Errorf("%w: missing iat", ErrMalformed)
	}
	skew := int64(v.Skew / time.Second)
	if skew < 0 {
		skew = 0
	}
	n := now.Unix()
	if n >= c.Expiry+skew {
		return nil, ErrExpired
	}
	if c.NotBefore != 0 && n+skew < c.NotBefore {
		return nil, fmt.Errorf("%w: nbf in the future", ErrNotYetValid)
	}
	if n+skew < c.IssuedAt {
		return nil, fmt.Errorf("%w: iat in the future", ErrNotYetValid)
	}
	if v.Issuer != "" && c.Issuer != v.Issuer {
		return nil, ErrIssuer
	}
	if v.Audience != "" && !aud.Contains(v.Audience) {
		return nil, ErrAudience
	}
	return c, nil
}

// allowedHeader lists the JOSE header parameters an edgepass token may carry;
// anything else (crit, jku, jwk, x5u, b64, …) is refused rather than ignored.
var allowedHeader = map[string]bool{"alg": true, "typ": true, "kid": true}

// CheckObject requires data to be exactly one JSON object whose top-level keys are
// unique (and, when allowed is non-nil, all in allowed): duplicate keys are where
// JSON parsers disagree, so nothing signed may contain any. Every JWS the
// plugin reads (sessions, facts, assertions, IdP tokens) goes through it.
func CheckObject(data []byte, allowed map[string]bool) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("not a JSON object")
	}
	seen := make(map[string]bool)
	for dec.More() {
		tok, err = dec.Token()
		if err != nil {
			return err
		}
		key, ok := tok.(string)
		if !ok {
			return errors.New("object key is not a string")
		}
		if seen[key] {
			return fmt.Errorf("duplicate member %q", key)
		}
		seen[key] = true
		if allowed != nil && !allowed[key] {
			return fmt.Errorf("member %q not allowed", key)
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // closing brace
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after object")
	}
	return nil
}

// SubjectKey is the NATS-subject-safe form of a subject used in edge-state keys:
// base64url (no padding) of SHA-256(sub).
func SubjectKey(sub string) string {
	sum := sha256.Sum256([]byte(sub))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// User is the name an identity header shows for the token's user: the
// preferred username, else the email, else the subject. The plugin, the
// daemon's /verify and its status page all name a user this way.
func (c *Claims) User() string {
	switch {
	case c.PreferredUsername != "":
		return c.PreferredUsername
	case c.Email != "":
		return c.Email
	}
	return c.Subject
}

// Bearer returns the token of an "Authorization: Bearer <token>" value (the
// scheme compared case-insensitively), or "" when v is not one.
func Bearer(v string) string {
	if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		return strings.TrimSpace(v[7:])
	}
	return ""
}
