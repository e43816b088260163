package token

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// FactType is the JOSE "typ" of a signed edge fact. Session tokens carry
// "JWT" (or nothing) and facts carry this, and each verifier refuses the
// other's, so a fact can never be replayed as a session and a session token
// never introduces a fact.
const FactType = "edgepass-fact"

// MaxFactSize bounds a signed fact (the edge bucket's value limit): larger
// input is refused before any decoding.
const MaxFactSize = 64 << 10

// ErrAnchor marks a trust anchor that cannot be used (bad encoding or length).
var ErrAnchor = errors.New("token: bad trust anchor")

// KeyHash is the first 16 characters of base64url(SHA-256(key)): the key
// id of session keys and trust anchors, and behind the prefix of assertion
// and mint keys.
func KeyHash(key []byte) string {
	sum := sha256.Sum256(key)
	return base64.RawURLEncoding.EncodeToString(sum[:])[:16]
}

// AnchorID is the kid of a trust-anchor public key (KeyHash), the same
// derivation as session keys.
func AnchorID(pub ed25519.PublicKey) string { return KeyHash(pub) }

// FormatAnchor is the text form of a trust-anchor public key that edges are
// configured with (plugin setting trustAnchors): base64url, no padding.
func FormatAnchor(pub ed25519.PublicKey) string {
	return b64.EncodeToString(pub)
}

// ParseAnchors reads trust-anchor public keys in FormatAnchor's form into a
// key set keyed by AnchorID.
func ParseAnchors(texts []string) (*KeySet, error) {
	var keys []Key
	for _, t := range texts {
		t = strings.TrimSpace(t)
		pub, err := b64.DecodeString(t)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: %q is not a base64url Ed25519 public key (43 characters, as `edgepass keys anchor` prints it)", ErrAnchor, clipText(t, 60))
		}
		keys = append(keys, Key{ID: AnchorID(pub), Public: ed25519.PublicKey(pub)})
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: none given", ErrAnchor)
	}
	return NewKeySet(keys...), nil
}

func clipText(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// SignFact signs payload, which must be one JSON object, with a trust-anchor
// key; the result is a compact JWS whose header names FactType.
func SignFact(payload []byte, priv ed25519.PrivateKey) (string, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return "", fmt.Errorf("token: sign fact: private key has %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	if err := CheckObject(payload, nil); err != nil {
		return "", fmt.Errorf("token: sign fact: payload: %v", err)
	}
	kid := AnchorID(priv.Public().(ed25519.PublicKey))
	out, err := signCompact(wireHeader{Alg: "EdDSA", Typ: FactType, Kid: kid}, payload, priv)
	if err != nil {
		return "", fmt.Errorf("token: sign fact: %w", err)
	}
	if len(out) > MaxFactSize {
		return "", fmt.Errorf("%w: signed fact is %d bytes, limit %d", ErrTooLarge, len(out), MaxFactSize)
	}
	return out, nil
}

// VerifyFact checks a signed fact against the trust anchors and returns its
// payload: one JSON object with unique members. Every failure wraps one of
// the package's sentinel errors.
func VerifyFact(raw []byte, anchors *KeySet) ([]byte, error) {
	if len(raw) > MaxFactSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(raw), MaxFactSize)
	}
	s := string(raw)
	if strings.Count(s, ".") != 2 || strings.ContainsAny(s, "\r\n \t") {
		return nil, fmt.Errorf("%w: not a compact JWS", ErrMalformed)
	}
	h, payloadSeg, sigSeg, signed, err := openCompact(s)
	if err != nil {
		return nil, err
	}
	if h.Typ != FactType {
		return nil, fmt.Errorf("%w: header: typ %q, want %q", ErrMalformed, h.Typ, FactType)
	}
	pub, ok := anchors.Lookup(h.Kid)
	if !ok {
		return nil, fmt.Errorf("%w: fact signed by %q, not a configured trust anchor", ErrUnknownKey, h.Kid)
	}
	return sealedPayload(pub, payloadSeg, sigSeg, signed)
}
