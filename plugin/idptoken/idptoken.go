// Package idptoken verifies JWT access tokens issued by the identity
// provider (RFC 9068 and the common shapes before it) against the IdP's
// JWKS, and maps their claims to an identity the way the daemon maps a
// login (oidc.groupsClaim, oidc.userClaims, oidc.groupsInclude).
//
// Algorithms: RS256/384/512, PS256/384/512, ES256/384/512 and EdDSA, each
// only with a key of its own type (and the key's own alg, when the JWKS
// names one): no "none", no HMAC, no algorithm confusion.
//
// Standard library only; runs in Yaegi (crypto/rsa, crypto/ecdsa,
// crypto/ed25519, math/big): no generics, plain structs for encoding/json.
package idptoken

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/edgepass/edgepass/plugin/token"
)

// MaxTokenSize bounds a raw access token (RSA signatures and groups make
// them larger than session tokens).
const MaxTokenSize = 16 << 10

// Errors Verify wraps (test with errors.Is): the session token's, so one
// mapping (policy.TokenReason) says why either kind of token was refused.
var (
	ErrMalformed   = token.ErrMalformed
	ErrAlgorithm   = token.ErrAlgorithm
	ErrUnknownKey  = token.ErrUnknownKey
	ErrSignature   = token.ErrSignature
	ErrExpired     = token.ErrExpired
	ErrNotYetValid = token.ErrNotYetValid
	ErrIssuer      = token.ErrIssuer
	ErrAudience    = token.ErrAudience
	ErrNoKeys      = errors.New("idptoken: no usable key in the JWKS")
)

var b64 = base64.RawURLEncoding

// key is one verification key of the IdP.
type key struct {
	kid string
	alg string // the JWK's alg ("" = any of its type)
	kty string // RSA, EC, OKP
	rsa *rsa.PublicKey
	ec  *ecdsa.PublicKey
	ed  ed25519.PublicKey
}

// Keys is a parsed IdP JWKS; immutable.
type Keys struct {
	list []*key
}

// Len is the number of usable keys.
func (ks *Keys) Len() int {
	if ks == nil {
		return 0
	}
	return len(ks.list)
}

type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// ParseJWKS reads the signing keys of a JWKS: RSA (2048 bits or more), EC
// (P-256, P-384, P-521) and OKP Ed25519. Encryption keys, other types and
// broken entries are skipped; a set without a usable key is ErrNoKeys.
func ParseJWKS(data []byte) (*Keys, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("%w: jwks: %v", ErrMalformed, err)
	}
	ks := &Keys{}
	for _, raw := range set.Keys {
		var j jwk
		if json.Unmarshal(raw, &j) != nil || (j.Use != "" && j.Use != "sig") {
			continue
		}
		k := &key{kid: j.Kid, alg: j.Alg, kty: j.Kty}
		switch j.Kty {
		case "RSA":
			n, err1 := b64.DecodeString(j.N)
			e, err2 := b64.DecodeString(j.E)
			if err1 != nil || err2 != nil || len(n) < 256 || len(e) == 0 || len(e) > 4 {
				continue
			}
			exp := 0
			for i := 0; i < len(e); i++ {
				exp = exp<<8 | int(e[i])
			}
			if exp < 3 || exp%2 == 0 {
				continue
			}
			k.rsa = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exp}
		case "EC":
			curve := curveOf(j.Crv)
			if curve == nil {
				continue
			}
			x, err1 := b64.DecodeString(j.X)
			y, err2 := b64.DecodeString(j.Y)
			size := (curve.Params().BitSize + 7) / 8
			if err1 != nil || err2 != nil || len(x) != size || len(y) != size {
				continue
			}
			pub := &ecdsa.PublicKey{Curve: curve, X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
			if !curve.IsOnCurve(pub.X, pub.Y) {
				continue
			}
			k.ec = pub
		case "OKP":
			x, err := b64.DecodeString(j.X)
			if err != nil || j.Crv != "Ed25519" || len(x) != ed25519.PublicKeySize {
				continue
			}
			k.ed = ed25519.PublicKey(x)
		default:
			continue
		}
		ks.list = append(ks.list, k)
	}
	if len(ks.list) == 0 {
		return nil, ErrNoKeys
	}
	return ks, nil
}

func curveOf(crv string) elliptic.Curve {
	switch crv {
	case "P-256":
		return elliptic.P256()
	case "P-384":
		return elliptic.P384()
	case "P-521":
		return elliptic.P521()
	}
	return nil
}

// Options are what an access token must match besides its signature.
type Options struct {
	// Issuer is the IdP's issuer; required.
	Issuer string
	// Audiences: the token's aud must name one of them; required.
	Audiences []string
	// Skew tolerates clock differences on exp, nbf and iat.
	Skew time.Duration
	// NoAudience skips the audience check (the daemon, minting an
	// assertion for a token an edge already checked); never at an edge.
	NoAudience bool
}

type header struct {
	Alg  string `json:"alg"`
	Kid  string `json:"kid"`
	Typ  string `json:"typ"`
	Crit any    `json:"crit"`
}

// Verify checks raw — shape, header, key, signature, iss, aud, exp, nbf,
// iat — and returns its claims (numbers as json.Number).
func Verify(raw string, keys *Keys, o Options, now time.Time) (map[string]any, error) {
	if len(raw) > MaxTokenSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(raw), MaxTokenSize)
	}
	if o.Issuer == "" || (len(o.Audiences) == 0 && !o.NoAudience) {
		return nil, fmt.Errorf("%w: no issuer or audience to check", ErrMalformed)
	}
	if strings.Count(raw, ".") != 2 || strings.ContainsAny(raw, "\r\n\t ") {
		return nil, fmt.Errorf("%w: not a compact JWS", ErrMalformed)
	}
	dot1 := strings.IndexByte(raw, '.')
	dot2 := dot1 + 1 + strings.IndexByte(raw[dot1+1:], '.')
	hdrJSON, err := b64.DecodeString(raw[:dot1])
	if err != nil {
		return nil, fmt.Errorf("%w: header encoding", ErrMalformed)
	}
	if err := token.CheckObject(hdrJSON, nil); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	var h header
	if err := json.Unmarshal(hdrJSON, &h); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	if h.Crit != nil {
		return nil, fmt.Errorf("%w: crit header", ErrMalformed)
	}
	switch strings.ToLower(h.Typ) {
	case "", "jwt", "at+jwt", "application/at+jwt":
	default:
		// An ID token is "JWT" too; a logout token, an edgepass fact or
		// assertion is not an access token.
		return nil, fmt.Errorf("%w: typ %q is not an access token", ErrMalformed, h.Typ)
	}
	switch h.Alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA":
	default:
		return nil, fmt.Errorf("%w: %q", ErrAlgorithm, h.Alg)
	}
	sig, err := b64.DecodeString(raw[dot2+1:])
	if err != nil || len(sig) == 0 {
		return nil, fmt.Errorf("%w: signature encoding", ErrMalformed)
	}
	input := []byte(raw[:dot2])
	if err := verifySignature(h.Alg, h.Kid, keys, input, sig); err != nil {
		return nil, err
	}
	payload, err := b64.DecodeString(raw[dot1+1 : dot2])
	if err != nil {
		return nil, fmt.Errorf("%w: payload encoding", ErrMalformed)
	}
	if err := token.CheckObject(payload, nil); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	if err := checkClaims(claims, o, now); err != nil {
		return nil, err
	}
	return claims, nil
}

// verifySignature checks sig over input with the key kid names, refusing
// any algorithm that does not match the key's type (and alg, when set).
func verifySignature(alg, kid string, keys *Keys, input, sig []byte) error {
	var hash crypto.Hash
	kty := ""
	switch alg {
	case "RS256", "PS256", "ES256":
		hash = crypto.SHA256
	case "RS384", "PS384", "ES384":
		hash = crypto.SHA384
	case "RS512", "PS512", "ES512":
		hash = crypto.SHA512
	case "EdDSA":
	default:
		return fmt.Errorf("%w: %q", ErrAlgorithm, alg)
	}
	switch alg[0] {
	case 'R', 'P':
		kty = "RSA"
	case 'E':
		kty = "EC"
		if alg == "EdDSA" {
			kty = "OKP"
		}
	}
	var candidates []*key
	if keys != nil {
		for _, k := range keys.list {
			if k.kty != kty || (k.alg != "" && k.alg != alg) {
				continue
			}
			if kid == "" || k.kid == kid {
				candidates = append(candidates, k)
			}
		}
	}
	if len(candidates) == 0 {
		return fmt.Errorf("%w: no %s key %q", ErrUnknownKey, alg, kid)
	}
	if kid == "" && len(candidates) > 1 {
		return fmt.Errorf("%w: no kid and %d candidate keys", ErrUnknownKey, len(candidates))
	}
	k := candidates[0]
	var digest []byte
	switch hash {
	case crypto.SHA256:
		sum := sha256.Sum256(input)
		digest = sum[:]
	case crypto.SHA384:
		sum := sha512.Sum384(input)
		digest = sum[:]
	case crypto.SHA512:
		sum := sha512.Sum512(input)
		digest = sum[:]
	}
	ok := false
	switch kty {
	case "RSA":
		if k.rsa.N.BitLen() < 2048 {
			return fmt.Errorf("%w: RSA key shorter than 2048 bits", ErrUnknownKey)
		}
		if alg[0] == 'R' {
			ok = rsa.VerifyPKCS1v15(k.rsa, hash, digest, sig) == nil
		} else {
			ok = rsa.VerifyPSS(k.rsa, hash, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
		}
	case "EC":
		size := (k.ec.Curve.Params().BitSize + 7) / 8
		if (alg == "ES256" && size != 32) || (alg == "ES384" && size != 48) || (alg == "ES512" && size != 66) {
			return fmt.Errorf("%w: %s with a %s key", ErrAlgorithm, alg, k.ec.Curve.Params().Name)
		}
		if len(sig) != 2*size {
			return fmt.Errorf("%w: signature length", ErrMalformed)
		}
		r := new(big.Int).SetBytes(sig[:size])
		s := new(big.Int).SetBytes(sig[size:])
		ok = ecdsa.Verify(k.ec, digest, r, s)
	case "OKP":
		ok = len(sig) == ed25519.SignatureSize && ed25519.Verify(k.ed, input, sig)
	}
	if !ok {
		return ErrSignature
	}
	return nil
}

func checkClaims(c map[string]any, o Options, now time.Time) error {
	exp, okExp := number(c["exp"])
	iat, okIat := number(c["iat"])
	if !okExp || exp <= 0 {
		return fmt.Errorf("%w: missing exp", ErrMalformed)
	}
	if !okIat || iat <= 0 {
		return fmt.Errorf("%w: missing iat", ErrMalformed)
	}
	if sub, _ := c["sub"].(string); sub == "" {
		return fmt.Errorf("%w: missing sub", ErrMalformed)
	}
	skew := int64(o.Skew / time.Second)
	n := now.Unix()
	if n >= exp+skew {
		return ErrExpired
	}
	if nbf, ok := number(c["nbf"]); ok && n+skew < nbf {
		return fmt.Errorf("%w: nbf in the future", ErrNotYetValid)
	}
	if n+skew < iat {
		return fmt.Errorf("%w: iat in the future", ErrNotYetValid)
	}
	if iss, _ := c["iss"].(string); iss != o.Issuer {
		return fmt.Errorf("%w: %q", ErrIssuer, iss)
	}
	if o.NoAudience {
		return nil
	}
	for _, a := range Audiences(c) {
		for _, want := range o.Audiences {
			if a == want {
				return nil
			}
		}
	}
	return ErrAudience
}

// Audiences returns the token's aud as a list.
func Audiences(c map[string]any) []string {
	switch v := c["aud"].(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// number reads a JSON number claim as int64.
func number(v any) (int64, bool) {
	switch n := v.(type) {
	case json.Number:
		if i, err := n.Int64(); err == nil {
			return i, true
		}
		if f, err := n.Float64(); err == nil {
			return int64(f), true
		}
	case float64:
		return int64(n), true
	}
	return 0, false
}
