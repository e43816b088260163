package kvbucket

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Horizon is how long a token issued by any daemon replica can still be
// live (*keys.Ring): the buckets holding facts and sessions about such tokens
// must keep them at least that long, whatever this replica's own
// session.lifetime is now.
type Horizon interface {
	// Horizon is the last known value (cheap; follows other replicas).
	Horizon() time.Duration
	// LoadHorizon re-reads the shared state first (before lowering anything).
	LoadHorizon(ctx context.Context) (time.Duration, error)
}

// FixedHorizon is a Horizon that never moves (tests, or one replica that
// never changes its lifetime).
type FixedHorizon time.Duration

// Horizon implements Horizon.
func (f FixedHorizon) Horizon() time.Duration { return time.Duration(f) }

// LoadHorizon implements Horizon.
func (f FixedHorizon) LoadHorizon(context.Context) (time.Duration, error) {
	return time.Duration(f), nil
}

// Sized is a bucket whose max age follows a Horizon plus a margin: Raise,
// called before every write that needs it, only ever grows it; Fit, called
// on the maintenance tick, also lowers it once the horizon has dropped.
// Lowering too early would silently drop facts or sessions tokens still
// depend on, so it is done on a fresh read of the horizon and checked again
// afterwards.
type Sized struct {
	// KV is the bucket (set once by OpenSized).
	KV          jetstream.KeyValue
	js          jetstream.JetStream
	name, descr string
	replicas    int
	margin      time.Duration
	horizon     Horizon

	mu  sync.Mutex
	ttl time.Duration // the bucket's max age as this process last set or saw it
}

// OpenSized creates the bucket with max age horizon+margin, or raises an
// existing bucket's max age to it (never lowers it: Fit does).
func OpenSized(ctx context.Context, js jetstream.JetStream, name, description string, replicas int, h Horizon, margin time.Duration) (*Sized, error) {
	if h == nil {
		return nil, errors.New("kvbucket: no horizon")
	}
	s := &Sized{js: js, name: name, descr: description, replicas: replicas, margin: margin, horizon: h}
	want := h.Horizon() + margin
	if kv, err := js.KeyValue(ctx, name); err == nil {
		st, err := kv.Status(ctx)
		if err != nil {
			return nil, fmt.Errorf("read bucket %s: %w", name, err)
		}
		if cur := st.TTL(); cur > want {
			want = cur
		}
	} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("open bucket %s: %w", name, err)
	}
	if err := s.set(ctx, want); err != nil {
		return nil, err
	}
	return s, nil
}

// TTL is the bucket's max age as last set or seen.
func (s *Sized) TTL() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ttl
}

func (s *Sized) set(ctx context.Context, ttl time.Duration) error {
	kv, err := Open(ctx, s.js, s.name, s.descr, ttl, s.replicas)
	if err != nil {
		return err
	}
	if s.KV == nil {
		s.KV = kv // the handle names the bucket; it stays valid across updates
	}
	s.ttl = ttl
	return nil
}

// Raise grows the max age to the current horizon plus margin if it is
// shorter; it costs nothing when it is not.
func (s *Sized) Raise(ctx context.Context) error {
	want := s.horizon.Horizon() + s.margin
	s.mu.Lock()
	defer s.mu.Unlock()
	if want <= s.ttl {
		return nil
	}
	if err := s.set(ctx, want); err != nil {
		return fmt.Errorf("raise max age of %s to %s: %w", s.name, want, err)
	}
	return nil
}

// Fit sets the max age to the horizon plus margin, lowering it when the
// horizon has dropped (the longer-lived tokens have all expired). Another
// replica may raise the horizon meanwhile (it starts with a longer
// session.lifetime): the horizon is read again after lowering and the max
// age raised back if needed.
func (s *Sized) Fit(ctx context.Context) error {
	h, err := s.horizon.LoadHorizon(ctx)
	if err != nil {
		return err
	}
	want := h + s.margin
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.KV.Status(ctx)
	if err != nil {
		return fmt.Errorf("read bucket %s: %w", s.name, err)
	}
	s.ttl = st.TTL()
	if s.ttl == want {
		return nil
	}
	if err := s.set(ctx, want); err != nil {
		return fmt.Errorf("set max age of %s to %s: %w", s.name, want, err)
	}
	if h2, err := s.horizon.LoadHorizon(ctx); err != nil {
		return err
	} else if h2+s.margin > want {
		return s.set(ctx, h2+s.margin)
	}
	return nil
}
