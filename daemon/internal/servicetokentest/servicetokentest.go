// Package servicetokentest issues real service tokens over the session
// store fake (package sessiontest), for the packages that serve them: the
// admin API, the console and the CLI.
package servicetokentest

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/internal/sessiontest"
	"github.com/edgepass/edgepass/daemon/servicetoken"
	"github.com/edgepass/edgepass/daemon/session"
	"github.com/edgepass/edgepass/plugin/token"
)

// Issuer is the publicURL the test managers issue for.
const Issuer = "https://auth.example.com"

// Signer signs claims with one Ed25519 key under KeyID, as the key ring
// signs with its current key; tests verify with Key's public half.
type Signer struct {
	KeyID string
	Key   ed25519.PrivateKey
}

// NewSigner is a Signer with a fresh key named kid.
func NewSigner(kid string) Signer {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	return Signer{KeyID: kid, Key: priv}
}

// SignClaims implements servicetoken.Signer.
func (s Signer) SignClaims(c *token.Claims) (string, string, error) {
	raw, err := token.Sign(c, s.KeyID, s.Key)
	return raw, s.KeyID, err
}

// Manager is a servicetoken.Manager signing with s that keeps its records
// in store and ends tokens at edge; maxLifetime bounds a token's lifetime,
// now is the clock (nil: time.Now).
func (s Signer) Manager(t testing.TB, store *sessiontest.Store, edge session.EdgeRevoker, maxLifetime func() time.Duration, now func() time.Time) *servicetoken.Manager {
	t.Helper()
	m, err := servicetoken.New(servicetoken.Options{Issuer: Issuer, Signer: s, Store: store,
		MaxLifetime: maxLifetime, Revoker: session.Revoker{Edge: edge, Store: store}, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return m
}
