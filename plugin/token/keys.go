package token

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"strings"
)

// AssertionKidPrefix starts the kid of every identity-assertion key in the
// daemon's JWKS (package assertion's KidPrefix): ParseJWKS skips them.
const AssertionKidPrefix = "assert-"

// Key is one Ed25519 verification key and the kid tokens name it by.
type Key struct {
	ID     string
	Public ed25519.PublicKey
}

// KeySet is an immutable set of verification keys; rotate by swapping the pointer,
// so readers never lock.
type KeySet struct {
	byID  map[string]ed25519.PublicKey
	order []string
}

// NewKeySet copies keys into a set; keys without an ID or with a wrong length are
// skipped (they could never verify), and the first key for an ID wins.
func NewKeySet(keys ...Key) *KeySet {
	ks := &KeySet{byID: make(map[string]ed25519.PublicKey, len(keys))}
	for _, k := range keys {
		if k.ID == "" || len(k.Public) != ed25519.PublicKeySize {
			continue
		}
		if _, dup := ks.byID[k.ID]; dup {
			continue
		}
		pub := make(ed25519.PublicKey, ed25519.PublicKeySize)
		copy(pub, k.Public)
		ks.byID[k.ID] = pub
		ks.order = append(ks.order, k.ID)
	}
	return ks
}

// Lookup returns the public key for kid; a nil set knows no keys.
func (ks *KeySet) Lookup(kid string) (ed25519.PublicKey, bool) {
	if ks == nil {
		return nil, false
	}
	pub, ok := ks.byID[kid]
	return pub, ok
}

// Len is the number of keys, for status pages and tests.
func (ks *KeySet) Len() int {
	if ks == nil {
		return 0
	}
	return len(ks.order)
}

// Equal reports whether ks and o hold the same key ids with the same public
// keys (order aside): a republished, unchanged JWKS is not a change.
func (ks *KeySet) Equal(o *KeySet) bool {
	if ks == nil || ks.Len() != o.Len() {
		return ks.Len() == 0 && o.Len() == 0
	}
	for _, kid := range ks.order {
		pub, ok := o.Lookup(kid)
		if !ok || !pub.Equal(ks.byID[kid]) {
			return false
		}
	}
	return true
}

// Keys returns a copy of the keys in insertion order (what MarshalJWKS writes).
func (ks *KeySet) Keys() []Key {
	if ks == nil {
		return nil
	}
	out := make([]Key, 0, len(ks.order))
	for _, id := range ks.order {
		pub := make(ed25519.PublicKey, len(ks.byID[id]))
		copy(pub, ks.byID[id])
		out = append(out, Key{ID: id, Public: pub})
	}
	return out
}

type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	Kid string `json:"kid"`
	X   string `json:"x"`
	Alg string `json:"alg,omitempty"`
	Use string `json:"use,omitempty"`
}

type jwks struct {
	Keys []json.RawMessage `json:"keys"`
}

type jwksOut struct {
	Keys []jwk `json:"keys"`
}

// ParseJWKS reads the Ed25519 (OKP) keys of a JWKS; other key types, keys for
// other uses or algorithms, assertion keys (AssertionKidPrefix) and broken
// entries are skipped so a mixed set still
// works, but a set with no usable key is an error (ErrNoKeys).
func ParseJWKS(data []byte) (*KeySet, error) {
	keys, entries, err := JWKSKeys(data, sessionKid)
	if err != nil {
		return nil, fmt.Errorf("%w: jwks: %v", ErrMalformed, err)
	}
	ks := NewKeySet(keys...)
	if ks.Len() == 0 {
		return nil, fmt.Errorf("%w: jwks has %d entries, none an Ed25519 signing key with kid and 32-byte x", ErrNoKeys, entries)
	}
	return ks, nil
}

// sessionKid takes every kid but an identity-assertion key's (package
// assertion), published in the same JWKS: it must never verify a session.
func sessionKid(kid string) bool { return !strings.HasPrefix(kid, AssertionKidPrefix) }

// JWKSKeys reads the Ed25519 signing keys of a JWKS (kty OKP, crv Ed25519,
// alg EdDSA or none, use sig or none, a 32-byte x) whose non-empty kid take
// accepts, skipping every other entry: the one JWKS reading of session keys
// (ParseJWKS) and of package assertion's keys. entries is the number of
// entries in the set; err is the JSON error of a set that is not a JWKS.
func JWKSKeys(data []byte, take func(kid string) bool) ([]Key, int, error) {
	var set jwks
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, 0, err
	}
	var keys []Key
	for _, raw := range set.Keys {
		var k jwk
		if err := json.Unmarshal(raw, &k); err != nil {
			continue
		}
		if k.Kty != "OKP" || k.Crv != "Ed25519" || k.Kid == "" || !take(k.Kid) {
			continue
		}
		if k.Alg != "" && k.Alg != "EdDSA" {
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		pub, err := b64.DecodeString(k.X)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			continue
		}
		keys = append(keys, Key{ID: k.Kid, Public: ed25519.PublicKey(pub)})
	}
	entries := len(set.Keys)
	return keys, entries, nil
}

// JWK is k's entry in a JWKS, as MarshalJWKS writes it (package assertion
// publishes its keys with it).
func JWK(k Key) json.RawMessage {
	data, _ := json.Marshal(jwkOf(k.ID, k.Public))
	return data
}

func jwkOf(kid string, pub ed25519.PublicKey) jwk {
	return jwk{Kty: "OKP", Crv: "Ed25519", Kid: kid, X: b64.EncodeToString(pub), Alg: "EdDSA", Use: "sig"}
}

// MarshalJWKS writes the set in the JWKS form ParseJWKS reads (and the daemon
// publishes to the edge).
func (ks *KeySet) MarshalJWKS() ([]byte, error) {
	out := jwksOut{Keys: []jwk{}}
	if ks != nil {
		for _, id := range ks.order {
			out.Keys = append(out.Keys, jwkOf(id, ks.byID[id]))
		}
	}
	return json.Marshal(out)
}
