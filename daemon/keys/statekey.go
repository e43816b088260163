package keys

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/edgepass/edgepass/daemon/seal"
)

// Login-state keys are AES-256-GCM keys (package seal) that seal a pending
// login (PKCE verifier, nonce, return URL, browser binding) into the
// browser's login cookie, so that any replica completes any callback and no
// replica keeps memory per pending login. They live in the ring, sealed
// with the encryption key like the signing keys, and rotate: the newest
// seals, and a previous key keeps opening until no login sealed with it can
// still be pending.
const (
	// LoginStateKeyRotation is how old the current login-state key gets
	// before Tick replaces it (`edgepass keys rotate` replaces it too).
	LoginStateKeyRotation = 24 * time.Hour
	// LoginStateKeyRetention is how long a replaced login-state key keeps
	// opening: longer than a login may take (oidcflow.PendingTTL, 10
	// minutes) plus clock skew between replicas.
	LoginStateKeyRetention = time.Hour
	// maxStateKeys bounds the keys kept when rotations come faster than
	// the retention.
	maxStateKeys = 8
	// stateReloadEvery bounds how often an unknown key id in a presented
	// value makes the ring be read again (a rotation by another replica
	// not followed yet): forged values cannot hammer NATS.
	stateReloadEvery = time.Second
	// stateAADPrefix separates login states from everything else sealed.
	stateAADPrefix = "edgepass login state\x00"
)

// storedStateKey is one login-state key as persisted: the raw AES key
// sealed with the encryption key, bound to its id. The ring keeps them
// oldest first: the last one seals.
type storedStateKey struct {
	ID      string `json:"kid"` // seal.Key.ID of the raw key
	Sealed  string `json:"sealed"`
	Created int64  `json:"created"`
}

func stateKeyAAD(id string) string { return "edgepass key ring: login-state key " + id }

// newStateKey generates a login-state key, sealed.
func (r *Ring) newStateKey(now time.Time) (storedStateKey, error) {
	k, raw, err := seal.Generate()
	if err != nil {
		return storedStateKey{}, fmt.Errorf("keys: generate a login-state key: %w", err)
	}
	return storedStateKey{ID: k.ID(), Sealed: r.o.Seal.Seal(raw, stateKeyAAD(k.ID())), Created: now.Unix()}, nil
}

// buildStateKeys opens the stored login-state keys, newest first.
func (r *Ring) buildStateKeys(sr *storedRing) ([]*seal.Key, error) {
	out := make([]*seal.Key, 0, len(sr.StateKeys))
	for i := len(sr.StateKeys) - 1; i >= 0; i-- {
		sk := sr.StateKeys[i]
		raw, err := r.openSecret(sk.Sealed, stateKeyAAD(sk.ID), "login-state key "+sk.ID)
		if err != nil {
			return nil, err
		}
		k, err := seal.New(raw)
		if err != nil {
			return nil, fmt.Errorf("keys: key ring's login-state key %q is damaged: %w", sk.ID, err)
		}
		if k.ID() != sk.ID {
			return nil, fmt.Errorf("keys: key ring's login-state key %q is damaged (its key has id %s)", sk.ID, k.ID())
		}
		out = append(out, k)
	}
	return out, nil
}

// ensureStateKey gives the ring a login-state key when it has none (a
// fresh ring, or one rewritten by an edgepass that did not know them).
func (r *Ring) ensureStateKey(sr *storedRing, now time.Time) (bool, error) {
	if len(sr.StateKeys) > 0 {
		return false, nil
	}
	k, err := r.newStateKey(now)
	if err != nil {
		return false, err
	}
	sr.StateKeys = append(sr.StateKeys, k)
	return true, nil
}

// pruneStateKeys drops login-state keys replaced more than
// LoginStateKeyRetention ago (the key after one replaced it when it was
// created), and the oldest beyond maxStateKeys; the current one stays.
func pruneStateKeys(sr *storedRing, now time.Time) bool {
	ks := sr.StateKeys
	drop := 0
	for drop < len(ks)-1 && (len(ks)-drop > maxStateKeys || now.Sub(time.Unix(ks[drop+1].Created, 0)) > LoginStateKeyRetention) {
		drop++
	}
	if drop == 0 {
		return false
	}
	sr.StateKeys = append([]storedStateKey(nil), ks[drop:]...)
	return true
}

// RotateLoginStateKey makes a new login-state key the one that seals; the
// previous one keeps opening logins started before, for
// LoginStateKeyRetention. It returns the new key's id.
func (r *Ring) RotateLoginStateKey(ctx context.Context) (string, error) {
	var id string
	err := r.mutate(ctx, func(sr *storedRing, now time.Time) (bool, error) {
		pruneStateKeys(sr, now)
		k, err := r.newStateKey(now)
		if err != nil {
			return false, err
		}
		id = k.ID
		sr.StateKeys = append(sr.StateKeys, k)
		return true, nil
	})
	if err != nil {
		return "", err
	}
	r.o.Logger.Info("keys: rotated the login-state key", "kid", id)
	return id, nil
}

// tickStateKeys is Tick's part for login-state keys: one again when the
// ring lost them, a new one when the current is older than
// LoginStateKeyRotation, and replaced ones dropped after the retention.
func (r *Ring) tickStateKeys(ctx context.Context) error {
	rotated := ""
	err := r.mutate(ctx, func(sr *storedRing, now time.Time) (bool, error) {
		changed, err := r.ensureStateKey(sr, now)
		if err != nil {
			return false, err
		}
		if cur := sr.StateKeys[len(sr.StateKeys)-1]; now.Sub(time.Unix(cur.Created, 0)) >= LoginStateKeyRotation {
			k, err := r.newStateKey(now)
			if err != nil {
				return false, err
			}
			sr.StateKeys = append(sr.StateKeys, k)
			rotated, changed = k.ID, true
		}
		return pruneStateKeys(sr, now) || changed, nil
	})
	if err == nil && rotated != "" {
		r.o.Logger.Info("keys: rotated the login-state key on schedule", "kid", rotated)
	}
	return err
}

// LoginStateSealer seals pending logins with the ring's current
// login-state key and opens them with any key still kept; every replica
// sharing the ring opens what another sealed. It implements
// oidcflow.Sealer.
func (r *Ring) LoginStateSealer() *LoginStateSealer { return &LoginStateSealer{r: r} }

// LoginStateSealer is the ring's login-state sealing; see Ring.LoginStateSealer.
type LoginStateSealer struct{ r *Ring }

// ErrUnknownStateKey means a login state was sealed with a login-state key
// the ring no longer holds (dropped after LoginStateKeyRetention) or never
// held (another installation): the login has to start again.
var ErrUnknownStateKey = errors.New("keys: sealed with a login-state key this ring does not hold (expired after rotation, or from another installation); start the login again")

// Seal seals plaintext for aad with the current login-state key (with the
// encryption key while the ring has none: every replica holds that too).
func (s *LoginStateSealer) Seal(plaintext []byte, aad string) string {
	if ks := s.r.current().stateKeys; len(ks) > 0 {
		return ks[0].Seal(plaintext, stateAADPrefix+aad)
	}
	return s.r.o.Seal.Seal(plaintext, stateAADPrefix+aad)
}

// Open opens a value from Seal with the same aad. A key id the ring does
// not know makes it read the ring once more (another replica may just have
// rotated), at most once per second.
func (s *LoginStateSealer) Open(sealed, aad string) ([]byte, error) {
	id, ok := sealedKeyID(sealed)
	if !ok {
		return nil, seal.ErrNotSealed
	}
	if k := s.r.stateKey(id); k != nil {
		return k.Open(sealed, stateAADPrefix+aad)
	}
	if s.r.reloadForStateKey() {
		if k := s.r.stateKey(id); k != nil {
			return k.Open(sealed, stateAADPrefix+aad)
		}
	}
	return nil, ErrUnknownStateKey
}

// sealedKeyID reads the key id of a sealed value ("es1.<id>.<body>").
func sealedKeyID(v string) (string, bool) {
	rest, ok := strings.CutPrefix(v, "es1.")
	if !ok {
		return "", false
	}
	id, _, ok := strings.Cut(rest, ".")
	return id, ok && id != ""
}

// stateKey finds a login-state key by id; the encryption key counts too
// (logins sealed while the ring had no login-state key).
func (r *Ring) stateKey(id string) *seal.Key {
	for _, k := range r.current().stateKeys {
		if k.ID() == id {
			return k
		}
	}
	if r.o.Seal.ID() == id {
		return r.o.Seal
	}
	return nil
}

// reloadForStateKey reads the ring again unless that was done less than
// stateReloadEvery ago; it reports whether it did.
func (r *Ring) reloadForStateKey() bool {
	now := time.Now().UnixNano()
	last := r.stateReload.Load()
	if now-last < int64(stateReloadEvery) || !r.stateReload.CompareAndSwap(last, now) {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.load(ctx); err != nil {
		r.o.Logger.Warn("keys: cannot read the key ring for a login-state key", "err", err)
		return false
	}
	return true
}
