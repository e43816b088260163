package keys

import (
	"context"
	"time"
)

// Horizon upkeep: a replica makes sure its lifetime's entry reaches at least
// horizonAhead past now+lifetime, extending it to horizonExtend when it must
// write (so it writes about every 15 minutes, not every tick).
const (
	horizonAhead  = 15 * time.Minute
	horizonExtend = 30 * time.Minute
)

// extendHorizon makes this replica's lifetime entry reach at least
// now+lifetime+horizonAhead, writing (to horizonExtend) only when it must.
func (r *Ring) extendHorizon(sr *storedRing, now time.Time) bool {
	life := int64(r.o.Lifetime / time.Second)
	need := now.Add(r.o.Lifetime + horizonAhead).Unix()
	to := now.Add(r.o.Lifetime + horizonExtend).Unix()
	for i := range sr.Horizon {
		if sr.Horizon[i].Lifetime == life {
			if sr.Horizon[i].Until >= need {
				return false
			}
			sr.Horizon[i].Until = to
			return true
		}
	}
	sr.Horizon = append(sr.Horizon, lifetimeEntry{Lifetime: life, Until: to})
	return true
}

// pruneHorizon drops lifetimes whose last token has expired.
func pruneHorizon(sr *storedRing, now time.Time) bool {
	kept := sr.Horizon[:0:0]
	for _, e := range sr.Horizon {
		if e.Until >= now.Unix() {
			kept = append(kept, e)
		}
	}
	changed := len(kept) != len(sr.Horizon)
	sr.Horizon = kept
	return changed
}

// horizonOf is the longest lifetime whose tokens can still be live, at least own.
func horizonOf(sr *storedRing, now time.Time, own time.Duration) time.Duration {
	h := own
	for _, e := range sr.Horizon {
		if d := time.Duration(e.Lifetime) * time.Second; e.Until >= now.Unix() && d > h {
			h = d
		}
	}
	return h
}

// Horizon is the longest token lifetime any replica issued tokens under
// whose tokens can still be live (at least this replica's lifetime): how
// long edge facts about tokens, and the buckets holding them, must last.
func (r *Ring) Horizon() time.Duration {
	return horizonOf(&r.current().stored, r.o.Now(), r.o.Lifetime)
}

// LoadHorizon re-reads the ring (other replicas' lifetimes) and returns the
// horizon; callers about to shrink something by it use this.
func (r *Ring) LoadHorizon(ctx context.Context) (time.Duration, error) {
	if err := r.load(ctx); err != nil {
		return 0, err
	}
	return r.Horizon(), nil
}
