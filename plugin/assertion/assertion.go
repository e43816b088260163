// Package assertion signs and verifies edgepass identity assertions: the
// short-lived JWT an edgepass middleware with `assertionHeader` sends a
// backend, so the backend can check who the request is for instead of
// trusting plain X-Auth-* headers (which are only safe while every request
// passes through Traefik).
//
// An assertion is a compact JWS, alg EdDSA, header typ
// "edgepass-assertion+jwt" and a kid starting with "assert-", signed by the
// edgepass daemon with an assertion key (never a session-signing key). Its
// claims:
//
//	iss     the daemon's publicURL
//	aud     the middleware's assertionAudience (one string; never the session
//	        audience "edgepass", so an assertion cannot be replayed as a session)
//	sub     the user's subject ("service:<name>" for a service token)
//	user    preferred username (else email, else sub)
//	email, name
//	groups  the effective groups (edge overrides applied)
//	iat, exp  unix seconds; exp - iat is at most MaxLifetime
//	sid     SHA-256 of the session id, base64url: correlates requests of one
//	        session without revealing the id that revokes it
//	kind    "session", "service" or "idp"
//
// The public keys are in the daemon's JWKS (<publicURL>/.well-known/jwks.json),
// next to the session keys; only keys whose kid starts with KidPrefix verify
// an assertion. A backend in Go uses NewVerifier (or Verify with keys it got
// itself); any JWT library that checks alg, iss, aud and exp works too.
//
// Standard library only (it lives in the plugin module, which Traefik loads
// in Yaegi): no generics, no methods needed by encoding/json.
package assertion

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/edgepass/edgepass/plugin/token"
)

const (
	// DefaultHeader is the request header edgepass puts the assertion in
	// unless the middleware names another (assertionHeader). Clients can
	// never send it: X-Edgepass-* is always stripped.
	DefaultHeader = "X-Edgepass-Assertion"
	// Type is the JOSE typ of an assertion (RFC 8725 explicit typing): a
	// session token ("JWT") or a signed edge fact never verifies as one.
	Type = "edgepass-assertion+jwt"
	// KidPrefix starts the key id of every assertion key. Session verifiers
	// skip such keys in a JWKS, and Verify accepts no other.
	KidPrefix = "assert-"
	// MaxLifetime bounds exp - iat: assertions are short-lived, and one
	// claiming a longer life was not minted by the daemon.
	MaxLifetime = 5 * 60
	// DefaultLifetime is how long the daemon makes an assertion valid.
	DefaultLifetime = 60
	// MaxSize bounds a raw assertion (it travels in one request header).
	MaxSize = 16 << 10
	// MaxAudience bounds the audience an assertion is minted for: the
	// middleware's assertionAudience, checked again by the daemon.
	MaxAudience = 256
	// SessionAudience is the audience of edgepass session tokens: an
	// assertion is never minted for it, and Verify refuses to check for it.
	SessionAudience = token.SessionAudience
	// ServiceAudience is the audience of service tokens, refused likewise.
	ServiceAudience = token.ServiceAudience
)

// Kinds of credential an assertion was minted for.
const (
	KindSession = "session"
	KindService = "service"
	KindIdP     = "idp"
)

// Errors Verify wraps (test with errors.Is).
var (
	ErrMalformed   = errors.New("assertion: malformed")
	ErrAlgorithm   = errors.New("assertion: algorithm not allowed")
	ErrType        = errors.New("assertion: not an edgepass assertion (typ)")
	ErrUnknownKey  = errors.New("assertion: unknown key id")
	ErrSignature   = errors.New("assertion: bad signature")
	ErrExpired     = errors.New("assertion: expired")
	ErrNotYetValid = errors.New("assertion: not yet valid")
	ErrIssuer      = errors.New("assertion: wrong issuer")
	ErrAudience    = errors.New("assertion: wrong audience")
	ErrLifetime    = errors.New("assertion: lifetime longer than assertions have")
	// ErrConfig: the verifier's own settings are unusable (no audience,
	// the session audience).
	ErrConfig = errors.New("assertion: bad verifier settings")
	// ErrNoKeys: a JWKS with no assertion key.
	ErrNoKeys = errors.New("assertion: no assertion key in the JWKS")
)

// Claims are an assertion's claims.
type Claims struct {
	Issuer      string   `json:"iss"`
	Audience    string   `json:"aud"`
	Subject     string   `json:"sub"`
	User        string   `json:"user,omitempty"`
	Email       string   `json:"email,omitempty"`
	Name        string   `json:"name,omitempty"`
	Groups      []string `json:"groups"`
	IssuedAt    int64    `json:"iat"`
	Expiry      int64    `json:"exp"`
	SessionHash string   `json:"sid,omitempty"`
	Kind        string   `json:"kind,omitempty"`
}

// wireClaims decodes aud as any, to tell a string from an array (plain
// fields: the interpreter Traefik runs plugins in has no embedded-struct
// JSON subtleties to get wrong).
type wireClaims struct {
	Iss    string   `json:"iss"`
	Aud    any      `json:"aud"`
	Sub    string   `json:"sub"`
	User   string   `json:"user"`
	Email  string   `json:"email"`
	Name   string   `json:"name"`
	Groups []string `json:"groups"`
	Iat    int64    `json:"iat"`
	Exp    int64    `json:"exp"`
	Sid    string   `json:"sid"`
	Kind   string   `json:"kind"`
}

// b64 refuses padding and non-canonical trailing bits: one assertion, one spelling.
var b64 = base64.RawURLEncoding.Strict()

// HashSessionID is the sid claim for a session id: base64url(SHA-256(id)).
func HashSessionID(sid string) string {
	if sid == "" {
		return ""
	}
	sum := sha256.Sum256([]byte("edgepass assertion sid\x00" + sid))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// KeyID is the kid of an assertion key: KidPrefix and the first 16
// characters of base64url(SHA-256(public key)).
func KeyID(pub ed25519.PublicKey) string { return KidPrefix + token.KeyHash(pub) }

// Sign encodes c as an assertion signed with priv (the daemon's minter).
func Sign(c *Claims, priv ed25519.PrivateKey) (string, error) {
	if c == nil {
		return "", errors.New("assertion: sign: nil claims")
	}
	if len(priv) != ed25519.PrivateKeySize {
		return "", fmt.Errorf("assertion: sign: private key has %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	if err := checkAudience(c.Audience); err != nil {
		return "", fmt.Errorf("assertion: sign: %w", err)
	}
	if c.Subject == "" || c.IssuedAt <= 0 || c.Expiry <= c.IssuedAt || c.Expiry-c.IssuedAt > MaxLifetime {
		return "", errors.New("assertion: sign: want sub, iat and exp with 0 < exp - iat <= MaxLifetime")
	}
	out := *c
	if out.Groups == nil {
		out.Groups = []string{}
	}
	payload, err := json.Marshal(out)
	if err != nil {
		return "", err
	}
	raw, err := token.SignJWS(Type, KeyID(priv.Public().(ed25519.PublicKey)), payload, priv)
	if err != nil {
		return "", err
	}
	if len(raw) > MaxSize {
		return "", fmt.Errorf("%w: signed assertion is %d bytes, limit %d", ErrMalformed, len(raw), MaxSize)
	}
	return raw, nil
}

// jwsErr maps an error of token's JWS steps to this package's.
func jwsErr(err error) error {
	switch {
	case errors.Is(err, token.ErrAlgorithm):
		return fmt.Errorf("%w: %v", ErrAlgorithm, err)
	case errors.Is(err, token.ErrSignature):
		return ErrSignature
	}
	return fmt.Errorf("%w: %v", ErrMalformed, err)
}

// checkAudience refuses an empty audience and the audiences of edgepass's
// own tokens.
func checkAudience(aud string) error {
	switch {
	case aud == "":
		return fmt.Errorf("%w: no audience", ErrConfig)
	case aud == SessionAudience || aud == ServiceAudience:
		return fmt.Errorf("%w: %q is the audience of edgepass's own tokens; give each backend its own", ErrConfig, aud)
	}
	return nil
}

// Options are what an assertion must match besides its signature.
type Options struct {
	// Issuer is the daemon's publicURL ("" = not checked; set it).
	Issuer string
	// Audience is this backend's audience (the middleware's
	// assertionAudience); required, and never the session audience.
	Audience string
	// Skew tolerates clock differences on exp and iat (default 0; at most
	// a minute is taken).
	Skew time.Duration
}

// Verify checks raw completely — size, shape, header (alg EdDSA, typ, an
// assertion kid), signature, issuer, audience, iat, exp and lifetime — and
// returns its claims. Every failure wraps one of the package's errors.
func Verify(raw string, keys *Keys, o Options, now time.Time) (*Claims, error) {
	if err := checkAudience(o.Audience); err != nil {
		return nil, err
	}
	if len(raw) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(raw), MaxSize)
	}
	if strings.Count(raw, ".") != 2 || strings.ContainsAny(raw, "\r\n\t ") {
		return nil, fmt.Errorf("%w: not a compact JWS", ErrMalformed)
	}
	// The compact JWS steps are token's (the session token's own); its
	// errors become this package's.
	typ, kid, payloadSeg, sigSeg, signed, err := token.OpenJWS(raw)
	if err != nil {
		return nil, jwsErr(err)
	}
	if typ != Type {
		return nil, fmt.Errorf("%w: typ %q", ErrType, typ)
	}
	if !strings.HasPrefix(kid, KidPrefix) {
		return nil, fmt.Errorf("%w: %q is not an assertion key", ErrUnknownKey, kid)
	}
	pub, ok := keys.lookup(kid)
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownKey, kid)
	}
	payload, err := token.JWSPayload(pub, payloadSeg, sigSeg, signed)
	if err != nil {
		return nil, jwsErr(err)
	}
	var w wireClaims
	if err := json.Unmarshal(payload, &w); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	aud, isString := w.Aud.(string)
	if !isString {
		// One audience, as a string: an array could name the session audience too.
		return nil, fmt.Errorf("%w: aud must be one string", ErrAudience)
	}
	c := Claims{Issuer: w.Iss, Audience: aud, Subject: w.Sub, User: w.User, Email: w.Email, Name: w.Name,
		Groups: w.Groups, IssuedAt: w.Iat, Expiry: w.Exp, SessionHash: w.Sid, Kind: w.Kind}
	if c.Subject == "" || c.IssuedAt <= 0 || c.Expiry <= 0 {
		return nil, fmt.Errorf("%w: want sub, iat and exp", ErrMalformed)
	}
	if c.Expiry-c.IssuedAt > MaxLifetime || c.Expiry <= c.IssuedAt {
		return nil, fmt.Errorf("%w: %d s", ErrLifetime, c.Expiry-c.IssuedAt)
	}
	skew := int64(o.Skew / time.Second)
	if skew < 0 {
		skew = 0
	}
	if skew > 60 {
		skew = 60
	}
	n := now.Unix()
	if n >= c.Expiry+skew {
		return nil, ErrExpired
	}
	if n+skew < c.IssuedAt {
		return nil, fmt.Errorf("%w: iat in the future", ErrNotYetValid)
	}
	if o.Issuer != "" && c.Issuer != o.Issuer {
		return nil, fmt.Errorf("%w: %q", ErrIssuer, c.Issuer)
	}
	if c.Audience != o.Audience {
		return nil, fmt.Errorf("%w: %q", ErrAudience, c.Audience)
	}
	return &c, nil
}

// Unverified decodes an assertion's claims without checking anything: for
// logs and for the edge, which got it over an authenticated channel.
func Unverified(raw string) (*Claims, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: not a compact JWS", ErrMalformed)
	}
	payload, err := b64.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("%w: payload encoding", ErrMalformed)
	}
	var c Claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	return &c, nil
}
