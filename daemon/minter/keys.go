// Package minter mints identity assertions for edges (docs/security.md,
// "Identity assertions"): it keeps the assertion-signing keys and the mint
// key (apart from the session-signing key ring), answers the edges' sealed
// requests on NATS (package mint), adds the assertion keys to the daemon's
// JWKS and the mint key to the keys fact edges receive.
package minter

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgepass/edgepass/daemon/seal"
	"github.com/edgepass/edgepass/plugin/assertion"
	"github.com/edgepass/edgepass/plugin/mint"
)

// StoreKey is the entry of the key bucket (nats.keyBucket) holding the
// assertion and mint keys, sealed with the encryption key. It is not the
// session ring's entry: neither can ever sign for the other.
const StoreKey = "assertion"

// Rotation: a new signing key and a new mint key every KeyRotation; the
// previous ones stay (published, and able to open requests in flight) until
// the next rotation, far longer than an assertion (5 minutes at most) or a
// request lives.
const (
	KeyRotation = 24 * time.Hour
	keepKeys    = 2
)

type storedKey struct {
	ID      string `json:"kid"`
	Sealed  string `json:"sealed"`
	Created int64  `json:"created"`
}

type stored struct {
	// Signing and Mint keys, oldest first: the last one is current.
	Signing []storedKey `json:"signing"`
	Mint    []storedKey `json:"mint"`
}

func signingAAD(kid string) string { return "edgepass assertion signing key " + kid }
func mintAAD(kid string) string    { return "edgepass assertion mint key " + kid }

// keySet is an opened, immutable view of the stored keys.
type keySet struct {
	rev      uint64
	created  int64 // when the current signing key was made
	signing  ed25519.PrivateKey
	public   []ed25519.PublicKey // every signing key's public half, newest first
	mintKid  string
	mintPub  []byte
	mintPriv map[string]*ecdh.PrivateKey
}

// Keys holds the assertion and mint keys, shared by the daemon's replicas
// through the key bucket.
type Keys struct {
	kv   jetstream.KeyValue
	seal *seal.Key
	now  func() time.Time

	mu  sync.Mutex // serializes writers in this process
	cur atomic.Pointer[keySet]
}

// OpenKeys loads the keys from kv (the key bucket), creating them on first
// use and rotating them when due.
func OpenKeys(ctx context.Context, kv jetstream.KeyValue, sealKey *seal.Key, now func() time.Time) (*Keys, error) {
	if sealKey == nil {
		return nil, errors.New("minter: no encryption key")
	}
	if now == nil {
		now = time.Now
	}
	k := &Keys{kv: kv, seal: sealKey, now: now}
	if _, err := k.Tick(ctx); err != nil {
		return nil, err
	}
	return k, nil
}

// Tick reads the stored keys again (another replica may have rotated them)
// and rotates them when due; changed reports a new current mint key, which
// the keys fact must carry.
func (k *Keys) Tick(ctx context.Context) (changed bool, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	before := ""
	if cur := k.cur.Load(); cur != nil {
		before = cur.mintKid
	}
	for attempt := 0; attempt < 10; attempt++ {
		var st stored
		var rev uint64
		e, err := k.kv.Get(ctx, StoreKey)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
		case err != nil:
			return false, fmt.Errorf("minter: read %s: %w", StoreKey, err)
		default:
			rev = e.Revision()
			if err := json.Unmarshal(e.Value(), &st); err != nil {
				return false, fmt.Errorf("minter: decode %s: %w", StoreKey, err)
			}
		}
		now := k.now()
		if len(st.Signing) > 0 && len(st.Mint) > 0 && now.Sub(time.Unix(st.Signing[len(st.Signing)-1].Created, 0)) < KeyRotation {
			ks, err := k.open(st, rev)
			if err != nil {
				return false, err
			}
			k.cur.Store(ks)
			return ks.mintKid != before, nil
		}
		if err := k.rotate(&st, now); err != nil {
			return false, err
		}
		data, err := json.Marshal(st)
		if err != nil {
			return false, err
		}
		if rev == 0 {
			_, err = k.kv.Create(ctx, StoreKey, data)
		} else {
			_, err = k.kv.Update(ctx, StoreKey, data, rev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue // another replica wrote first: read its keys
		}
		if err != nil {
			return false, fmt.Errorf("minter: write %s: %w", StoreKey, err)
		}
		// Written: the next pass reads the keys back and installs them.
	}
	return false, errors.New("minter: the assertion keys kept changing; retry")
}

// rotate appends a new signing key and mint key, keeping keepKeys of each.
func (k *Keys) rotate(st *stored, now time.Time) error {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	kid := assertion.KeyID(priv.Public().(ed25519.PublicKey))
	st.Signing = append(st.Signing, storedKey{ID: kid, Sealed: k.seal.Seal(priv.Seed(), signingAAD(kid)), Created: now.Unix()})
	m, err := mint.NewKey()
	if err != nil {
		return err
	}
	mkid := mint.KeyID(m.PublicKey().Bytes())
	st.Mint = append(st.Mint, storedKey{ID: mkid, Sealed: k.seal.Seal(m.Bytes(), mintAAD(mkid)), Created: now.Unix()})
	if len(st.Signing) > keepKeys {
		st.Signing = st.Signing[len(st.Signing)-keepKeys:]
	}
	if len(st.Mint) > keepKeys {
		st.Mint = st.Mint[len(st.Mint)-keepKeys:]
	}
	return nil
}

// open unseals the stored keys, checking each against its id.
func (k *Keys) open(st stored, rev uint64) (*keySet, error) {
	ks := &keySet{rev: rev, mintPriv: map[string]*ecdh.PrivateKey{}}
	for i := len(st.Signing) - 1; i >= 0; i-- {
		sk := st.Signing[i]
		seed, err := k.seal.Open(sk.Sealed, signingAAD(sk.ID))
		if err != nil {
			return nil, fmt.Errorf("minter: assertion key %s: %w", sk.ID, err)
		}
		if len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("minter: assertion key %s is damaged", sk.ID)
		}
		priv := ed25519.NewKeyFromSeed(seed)
		pub := priv.Public().(ed25519.PublicKey)
		if assertion.KeyID(pub) != sk.ID {
			return nil, fmt.Errorf("minter: assertion key %s is damaged (its key has id %s)", sk.ID, assertion.KeyID(pub))
		}
		if ks.signing == nil {
			ks.signing, ks.created = priv, sk.Created
		}
		ks.public = append(ks.public, pub)
	}
	for i := len(st.Mint) - 1; i >= 0; i-- {
		mk := st.Mint[i]
		raw, err := k.seal.Open(mk.Sealed, mintAAD(mk.ID))
		if err != nil {
			return nil, fmt.Errorf("minter: mint key %s: %w", mk.ID, err)
		}
		priv, err := mint.ParseKey(raw)
		if err != nil || mint.KeyID(priv.PublicKey().Bytes()) != mk.ID {
			return nil, fmt.Errorf("minter: mint key %s is damaged", mk.ID)
		}
		if ks.mintKid == "" {
			ks.mintKid, ks.mintPub = mk.ID, priv.PublicKey().Bytes()
		}
		ks.mintPriv[mk.ID] = priv
	}
	if ks.signing == nil || ks.mintKid == "" {
		return nil, errors.New("minter: no assertion or mint key stored")
	}
	return ks, nil
}

// SigningKey is the current assertion-signing key.
func (k *Keys) SigningKey() ed25519.PrivateKey { return k.cur.Load().signing }

// PublicKeys are the public halves of the assertion keys, newest first.
func (k *Keys) PublicKeys() []ed25519.PublicKey {
	return append([]ed25519.PublicKey(nil), k.cur.Load().public...)
}

// MintKey is the current mint key's id and public half (the keys fact's).
func (k *Keys) MintKey() (string, []byte) {
	ks := k.cur.Load()
	return ks.mintKid, ks.mintPub
}

// mintPrivate returns the mint key named kid (current or previous).
func (k *Keys) mintPrivate(kid string) *ecdh.PrivateKey {
	return k.cur.Load().mintPriv[kid]
}
