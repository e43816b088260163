package kvbucket_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/internal/natstest"
	"github.com/edgepass/edgepass/daemon/kvbucket"
)

// scripted is a Horizon whose fresh reads follow a script (another replica
// moving the horizon between reads), then stay at the last value.
type scripted struct {
	mu     sync.Mutex
	cached time.Duration
	loads  []time.Duration
}

func (s *scripted) Horizon() time.Duration { s.mu.Lock(); defer s.mu.Unlock(); return s.cached }
func (s *scripted) LoadHorizon(context.Context) (time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.loads) > 0 {
		s.cached, s.loads = s.loads[0], s.loads[1:]
	}
	return s.cached, nil
}

func TestSizedFollowsTheHorizon(t *testing.T) {
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	h := &scripted{cached: 2 * time.Hour}
	b, err := kvbucket.OpenSized(ctx, srv.JS, "sized", "test", 1, h, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ttl := func() time.Duration {
		st, err := b.KV.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st.TTL()
	}
	steps := []struct {
		name   string
		cached time.Duration
		loads  []time.Duration
		do     func() error
		want   time.Duration
	}{
		{"opened", 2 * time.Hour, nil, func() error { return nil }, 2*time.Hour + time.Minute},
		{"raise grows", 3 * time.Hour, nil, func() error { return b.Raise(ctx) }, 3*time.Hour + time.Minute},
		{"raise never shrinks", time.Hour, nil, func() error { return b.Raise(ctx) }, 3*time.Hour + time.Minute},
		{"fit shrinks on a fresh read", 3 * time.Hour, []time.Duration{time.Hour}, func() error { return b.Fit(ctx) }, time.Hour + time.Minute},
		// Another replica starts with a 5h lifetime between the read and the lowering: the check after lowering raises it back.
		{"fit re-raises after a concurrent raise", time.Hour, []time.Duration{30 * time.Minute, 5 * time.Hour}, func() error { return b.Fit(ctx) }, 5*time.Hour + time.Minute},
		{"reopening never shrinks", 10 * time.Minute, nil, func() error {
			_, err := kvbucket.OpenSized(ctx, srv.JS, "sized", "test", 1, kvbucket.FixedHorizon(10*time.Minute), time.Minute)
			return err
		}, 5*time.Hour + time.Minute},
	}
	for _, s := range steps {
		h.mu.Lock()
		h.cached, h.loads = s.cached, s.loads
		h.mu.Unlock()
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := ttl(); got != s.want {
			t.Errorf("%s: max age %s, want %s", s.name, got, s.want)
		}
	}
}
