package assertion

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"strings"
)

// Keys is an immutable set of assertion verification keys.
type Keys struct {
	byID map[string]ed25519.PublicKey
}

// Key is one assertion public key.
type Key struct {
	ID     string
	Public ed25519.PublicKey
}

// NewKeys copies keys into a set; keys whose kid lacks KidPrefix, or of a
// wrong length, are skipped.
func NewKeys(keys ...Key) *Keys {
	ks := &Keys{byID: map[string]ed25519.PublicKey{}}
	for _, k := range keys {
		if !strings.HasPrefix(k.ID, KidPrefix) || len(k.Public) != ed25519.PublicKeySize {
			continue
		}
		if _, dup := ks.byID[k.ID]; dup {
			continue
		}
		pub := make(ed25519.PublicKey, ed25519.PublicKeySize)
		copy(pub, k.Public)
		ks.byID[k.ID] = pub
	}
	return ks
}

// Len is the number of keys.
func (ks *Keys) Len() int {
	if ks == nil {
		return 0
	}
	return len(ks.byID)
}

// Has reports whether kid is in the set.
func (ks *Keys) Has(kid string) bool {
	_, ok := ks.lookup(kid)
	return ok
}

func (ks *Keys) lookup(kid string) (ed25519.PublicKey, bool) {
	if ks == nil {
		return nil, false
	}
	pub, ok := ks.byID[kid]
	return pub, ok
}

type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	Kid string `json:"kid"`
	X   string `json:"x"`
	Alg string `json:"alg,omitempty"`
	Use string `json:"use,omitempty"`
}

// ParseJWKS reads the assertion keys of a JWKS (the daemon's
// /.well-known/jwks.json): Ed25519 keys whose kid starts with KidPrefix.
// Session keys and keys of other types are skipped; a set without any
// assertion key is ErrNoKeys.
func ParseJWKS(data []byte) (*Keys, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("%w: jwks: %v", ErrMalformed, err)
	}
	var keys []Key
	for _, raw := range set.Keys {
		var k jwk
		if json.Unmarshal(raw, &k) != nil {
			continue
		}
		if k.Kty != "OKP" || k.Crv != "Ed25519" || !strings.HasPrefix(k.Kid, KidPrefix) {
			continue
		}
		if (k.Alg != "" && k.Alg != "EdDSA") || (k.Use != "" && k.Use != "sig") {
			continue
		}
		pub, err := b64.DecodeString(k.X)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			continue
		}
		keys = append(keys, Key{ID: k.Kid, Public: ed25519.PublicKey(pub)})
	}
	ks := NewKeys(keys...)
	if ks.Len() == 0 {
		return nil, ErrNoKeys
	}
	return ks, nil
}

// JWK is the JWKS entry for an assertion public key (the daemon adds these
// to its /.well-known/jwks.json).
func JWK(pub ed25519.PublicKey) json.RawMessage {
	data, _ := json.Marshal(jwk{Kty: "OKP", Crv: "Ed25519", Kid: KeyID(pub), X: b64.EncodeToString(pub), Alg: "EdDSA", Use: "sig"})
	return data
}
