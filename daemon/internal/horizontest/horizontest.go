// Package horizontest moves a kvbucket.Horizon under a test and checks that
// a bucket's max age follows it (the edge bucket, the sessions bucket, any
// kvbucket.Sized).
package horizontest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Horizon is a kvbucket.Horizon a test sets. Its fresh reads (LoadHorizon)
// may follow a script, as when another replica moves the horizon between
// reads; once the script is used up they return the last value.
type Horizon struct {
	mu     sync.Mutex
	cached time.Duration
	loads  []time.Duration
}

// New returns a Horizon at d.
func New(d time.Duration) *Horizon { return &Horizon{cached: d} }

// Set moves the horizon to d; the fresh reads that follow return loads one
// after the other, then the last value read.
func (h *Horizon) Set(d time.Duration, loads ...time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cached, h.loads = d, loads
}

// Horizon is the last known value.
func (h *Horizon) Horizon() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cached
}

// LoadHorizon is a fresh read: the next scripted value, if any.
func (h *Horizon) LoadHorizon(context.Context) (time.Duration, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.loads) > 0 {
		h.cached, h.loads = h.loads[0], h.loads[1:]
	}
	return h.cached, nil
}

// Step moves the horizon to Horizon (fresh reads then returning Loads), runs
// Do and expects the bucket's max age to be Want afterwards.
type Step struct {
	Name    string
	Horizon time.Duration
	Loads   []time.Duration
	Do      func() error
	Want    time.Duration
}

// Run runs the steps in order on h, checking bucket's max age after each.
func Run(t testing.TB, js jetstream.JetStream, bucket string, h *Horizon, steps []Step) {
	t.Helper()
	for _, s := range steps {
		h.Set(s.Horizon, s.Loads...)
		if err := s.Do(); err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		if got := MaxAge(t, js, bucket); got != s.Want {
			t.Errorf("%s: bucket %s max age %s, want %s", s.Name, bucket, got, s.Want)
		}
	}
}

// MaxAge is the bucket's max age (its TTL).
func MaxAge(t testing.TB, js jetstream.JetStream, bucket string) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st.TTL()
}
