package assertion

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/edgepass/edgepass/plugin/token"
)

// Keys is an immutable set of assertion verification keys: a token.KeySet
// that only ever holds keys whose kid starts with KidPrefix.
type Keys struct {
	set *token.KeySet
}

// Key is one assertion public key.
type Key struct {
	ID     string
	Public ed25519.PublicKey
}

// NewKeys copies keys into a set; keys whose kid lacks KidPrefix, or of a
// wrong length, are skipped.
func NewKeys(keys ...Key) *Keys {
	var own []token.Key
	for _, k := range keys {
		if assertionKid(k.ID) {
			own = append(own, token.Key{ID: k.ID, Public: k.Public})
		}
	}
	return &Keys{set: token.NewKeySet(own...)}
}

// assertionKid takes the kids of assertion keys only.
func assertionKid(kid string) bool { return strings.HasPrefix(kid, KidPrefix) }

// Len is the number of keys.
func (ks *Keys) Len() int {
	if ks == nil {
		return 0
	}
	return ks.set.Len()
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
	return ks.set.Lookup(kid)
}

// ParseJWKS reads the assertion keys of a JWKS (the daemon's
// /.well-known/jwks.json): Ed25519 keys whose kid starts with KidPrefix,
// read as token reads session keys. Session keys and keys of other types
// are skipped; a set without any assertion key is ErrNoKeys.
func ParseJWKS(data []byte) (*Keys, error) {
	keys, _, err := token.JWKSKeys(data, assertionKid)
	if err != nil {
		return nil, fmt.Errorf("%w: jwks: %v", ErrMalformed, err)
	}
	ks := &Keys{set: token.NewKeySet(keys...)}
	if ks.Len() == 0 {
		return nil, ErrNoKeys
	}
	return ks, nil
}

// JWK is the JWKS entry for an assertion public key (the daemon adds these
// to its /.well-known/jwks.json).
func JWK(pub ed25519.PublicKey) json.RawMessage {
	return token.JWK(token.Key{ID: KeyID(pub), Public: pub})
}
