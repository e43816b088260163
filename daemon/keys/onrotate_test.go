package keys

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/internal/natstest"
)

// TestScheduledRotationIsReportedOnce: the audit trail records a rotation
// by keys.rotationInterval once, by the replica that made it, however many
// replicas tick at once.
func TestScheduledRotationIsReportedOnce(t *testing.T) {
	srv := natstest.Start(t)
	clk := newClock()
	var mu sync.Mutex
	var reported []string
	every := func(o *Options) {
		o.RotationInterval = 24 * time.Hour
		o.OnScheduledRotation = func(_ context.Context, kid string) {
			mu.Lock()
			reported = append(reported, kid)
			mu.Unlock()
		}
	}
	a := open(t, srv.JS, clk, &recorder{}, every)
	b := open(t, srv.JS, clk, &recorder{}, every)
	if err := a.Tick(natstest.Context(t)); err != nil {
		t.Fatal(err)
	}
	clk.Add(24*time.Hour + time.Second)
	var wg sync.WaitGroup
	for _, r := range []*Ring{a, b, a, b} {
		wg.Go(func() {
			if err := r.Tick(natstest.Context(t)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(reported) != 1 || reported[0] != a.KeyID() {
		t.Fatalf("reported %v, want the new key %s once", reported, a.KeyID())
	}
}
