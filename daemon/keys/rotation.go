package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/edgepass/edgepass/plugin/edgestate"
)

// Rotate makes a new key the signing key. The new public key reaches the
// edge bucket before any token is signed with it; the previous key keeps
// verifying until its tokens have expired. It returns the new key id.
func (r *Ring) Rotate(ctx context.Context) (string, error) {
	var kid string
	err := r.mutate(ctx, func(sr *storedRing, now time.Time) (bool, error) {
		prune(sr, now, r.retention(sr, now))
		// A pending key is an unfinished rotation: finish it.
		var added bool
		var err error
		kid, added, err = r.addPending(sr, now)
		return added, err
	})
	if err != nil {
		return "", err
	}
	if _, err := r.publishThenActivate(ctx); err != nil {
		return "", err
	}
	r.o.Logger.Info("keys: rotated signing key", "kid", kid)
	// An operator rotating keys means every key: the login-state key too
	// (logins already started keep working with the previous one).
	if _, err := r.RotateLoginStateKey(ctx); err != nil {
		return kid, err
	}
	return kid, nil
}

// RevokeResult is what Revoke did.
type RevokeResult struct {
	// KeyID is the revoked key.
	KeyID string `json:"kid"`
	// WasActive: it was the signing key, so the ring rotated at once.
	WasActive bool `json:"wasActive"`
	// SigningKeyID is the key signing now.
	SigningKeyID string `json:"signingKid"`
}

// Revoke distrusts kid for good (a leaked or suspect key): its private half
// is wiped, it leaves the JWKS, and the keys fact lists it as revoked so
// every edge refuses its tokens from now on, also when a forger signs new
// ones. Revoking the signing key is allowed: a fresh key is published, then
// signs, before kid is dropped. Revoking a revoked key republishes; an
// unknown kid is ErrUnknownKey. Ending the sessions whose tokens kid signed
// is the caller's part (session.Session.KeyID).
func (r *Ring) Revoke(ctx context.Context, kid string) (RevokeResult, error) {
	res := RevokeResult{KeyID: kid}
	// 1. If kid signs now, have a successor published first.
	signing := false
	if err := r.mutate(ctx, func(sr *storedRing, now time.Time) (bool, error) {
		i := indexOf(sr, kid)
		if i < 0 {
			return false, ErrUnknownKey
		}
		signing = activeIndex(sr) == i
		if !signing {
			return false, nil
		}
		_, added, err := r.addPending(sr, now)
		return added, err
	}); err != nil {
		return res, err
	}
	if signing {
		if err := r.publish(ctx); err != nil {
			return res, err
		}
	}
	// 2. Revoke it and, if it was signing, activate the successor in the same write.
	if err := r.mutate(ctx, func(sr *storedRing, now time.Time) (bool, error) {
		i := indexOf(sr, kid)
		if i < 0 {
			return false, ErrUnknownKey
		}
		k := &sr.Keys[i]
		res.WasActive = false
		if k.Revoked > 0 {
			return false, nil
		}
		if activeIndex(sr) == i {
			res.WasActive = true
			k.Retired = now.Unix()
			if p := pendingIndex(sr); p >= 0 {
				sr.Keys[p].Activated = now.Unix()
			}
		}
		k.Revoked = now.Unix()
		k.Sealed, k.Seed = "", nil
		return true, nil
	}); err != nil {
		return res, err
	}
	// 3. The edges drop it (and finish an activation left pending).
	if _, err := r.publishThenActivate(ctx); err != nil {
		return res, err
	}
	res.SigningKeyID = r.KeyID()
	r.o.Logger.Warn("keys: revoked a key; edges refuse its tokens from now on", "kid", kid, "wasSigning", res.WasActive, "signingKid", res.SigningKeyID)
	return res, nil
}

// publishThenActivate publishes the keys fact and, when a key is pending,
// makes it the signing key and publishes again: a key reaches the edge
// bucket before any token is signed with it, and the edges end up with the
// ring as it now is. It reports whether this replica activated a pending
// key (false when another replica finished it first).
func (r *Ring) publishThenActivate(ctx context.Context) (bool, error) {
	if err := r.publish(ctx); err != nil {
		return false, err
	}
	if pendingIndex(&r.current().stored) < 0 {
		return false, nil
	}
	activated, err := r.activatePending(ctx)
	if err != nil {
		return false, err
	}
	return activated, r.publish(ctx)
}

// activatePending turns the pending key into the signing key and retires the
// previous one, and reports whether this call did. Called only after the
// pending key was published.
func (r *Ring) activatePending(ctx context.Context) (bool, error) {
	activated := false
	err := r.mutate(ctx, func(sr *storedRing, now time.Time) (bool, error) {
		p := pendingIndex(sr)
		activated = p >= 0 // the last attempt's answer counts
		if p < 0 {
			return false, nil // another replica finished it
		}
		if a := activeIndex(sr); a >= 0 {
			sr.Keys[a].Retired = now.Unix()
		}
		sr.Keys[p].Activated = now.Unix()
		return true, nil
	})
	return activated && err == nil, err
}

// maxPublishRounds bounds publish's re-reads of a ring that keeps changing.
const maxPublishRounds = 10

// KeysFact is the keys fact for the ring as it is: every public key a live
// token may name, the revoked key ids, and the horizon as the longest token
// lifetime edges accept. The publisher signs it.
func (r *Ring) KeysFact() edgestate.KeysFact {
	snap := r.current()
	return edgestate.KeysFact{
		JWKS:             json.RawMessage(snap.jwks),
		Revoked:          append([]string(nil), snap.revoked...),
		MaxTokenLifetime: int64(r.Horizon() / time.Second),
	}
}

// publish pushes the keys fact to the edge. The edge's keys entry is
// last-writer-wins across replicas, so after writing, the ring is read
// again: if another replica changed it meanwhile, the newer fact is written
// too. Otherwise a replica whose write lands after another's rotation would
// leave the edges without the new key until the next periodic republish.
func (r *Ring) publish(ctx context.Context) error {
	if r.pub == nil {
		return nil
	}
	for range maxPublishRounds {
		snap := r.current()
		f := r.KeysFact()
		if err := r.pub.PublishKeys(ctx, f); err != nil {
			return fmt.Errorf("keys: publish the keys fact to the edge: %w", err)
		}
		r.published.Store(f.MaxTokenLifetime)
		r.lastPublish.Store(r.o.Now().UnixNano())
		if err := r.load(ctx); err != nil {
			return err
		}
		if r.current().rev == snap.rev {
			return nil
		}
	}
	return errors.New("keys: key ring kept changing while publishing the keys fact; retry")
}

// republishEvery is how often the keys fact is written again so it never
// ages out of the edge bucket (whose max age is at least the horizon).
func (r *Ring) republishEvery() time.Duration {
	every := r.Horizon() / 4
	if every > time.Hour {
		every = time.Hour
	}
	return every
}

// Tick does one maintenance step: extend this replica's horizon entry and
// drop dead ones, rotate when the signing key is older than
// RotationInterval, drop keys no live token can name, and republish the
// keys fact when anything it says changed or it is due. Replicas may all
// call it: the first writer wins, the others see the result.
func (r *Ring) Tick(ctx context.Context) error {
	if err := r.mutate(ctx, func(sr *storedRing, now time.Time) (bool, error) {
		extended := r.extendHorizon(sr, now)
		return pruneHorizon(sr, now) || extended, nil
	}); err != nil {
		return err
	}
	if err := r.tickStateKeys(ctx); err != nil {
		return err
	}
	cur := r.current()
	if iv := r.o.RotationInterval; iv > 0 && cur.active != nil && r.o.Now().Sub(cur.created) >= iv {
		before := cur.active.ID
		if err := r.mutate(ctx, func(sr *storedRing, now time.Time) (bool, error) {
			if a := activeIndex(sr); a >= 0 && sr.Keys[a].ID != before {
				return false, nil // another replica rotated already
			}
			_, added, err := r.addPending(sr, now)
			return added, err
		}); err != nil {
			return err
		}
	}
	published := cur.rev // the ring the edges hold, as far as this tick knows
	if pendingIndex(&r.current().stored) >= 0 {
		activated, err := r.publishThenActivate(ctx)
		if err != nil {
			return err
		}
		if activated {
			r.o.Logger.Info("keys: rotated signing key on schedule", "kid", r.KeyID())
			if r.o.OnScheduledRotation != nil {
				r.o.OnScheduledRotation(ctx, r.KeyID())
			}
		}
		published = r.current().rev
	}
	pruned := false
	if err := r.mutate(ctx, func(sr *storedRing, now time.Time) (bool, error) {
		pruned = prune(sr, now, r.retention(sr, now))
		return pruned, nil
	}); err != nil {
		return err
	}
	due := r.o.Now().Sub(time.Unix(0, r.lastPublish.Load())) >= r.republishEvery()
	if pruned || r.current().rev != published || due || r.published.Load() != int64(r.Horizon()/time.Second) {
		return r.publish(ctx)
	}
	return nil
}

// prune drops retired and revoked keys whose tokens have all expired.
func prune(sr *storedRing, now time.Time, retention time.Duration) bool {
	kept := sr.Keys[:0:0]
	for _, k := range sr.Keys {
		end := k.Retired
		if k.Revoked > 0 {
			end = k.Revoked
		}
		if end > 0 && now.After(time.Unix(end, 0).Add(retention)) {
			continue
		}
		kept = append(kept, k)
	}
	changed := len(kept) != len(sr.Keys)
	sr.Keys = kept
	return changed
}
