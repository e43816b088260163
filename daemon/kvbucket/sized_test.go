package kvbucket_test

import (
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/internal/horizontest"
	"github.com/edgepass/edgepass/daemon/internal/natstest"
	"github.com/edgepass/edgepass/daemon/kvbucket"
)

func TestSizedFollowsTheHorizon(t *testing.T) {
	srv := natstest.Start(t)
	ctx := natstest.Context(t)
	h := horizontest.New(2 * time.Hour)
	b, err := kvbucket.OpenSized(ctx, srv.JS, "sized", "test", 1, h, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	horizontest.Run(t, srv.JS, "sized", h, []horizontest.Step{
		{Name: "opened", Horizon: 2 * time.Hour, Do: func() error { return nil }, Want: 2*time.Hour + time.Minute},
		{Name: "raise grows", Horizon: 3 * time.Hour, Do: func() error { return b.Raise(ctx) }, Want: 3*time.Hour + time.Minute},
		{Name: "raise never shrinks", Horizon: time.Hour, Do: func() error { return b.Raise(ctx) }, Want: 3*time.Hour + time.Minute},
		{Name: "fit shrinks on a fresh read", Horizon: 3 * time.Hour, Loads: []time.Duration{time.Hour}, Do: func() error { return b.Fit(ctx) }, Want: time.Hour + time.Minute},
		// Another replica starts with a 5h lifetime between the read and the lowering: the check after lowering raises it back.
		{Name: "fit re-raises after a concurrent raise", Horizon: time.Hour, Loads: []time.Duration{30 * time.Minute, 5 * time.Hour}, Do: func() error { return b.Fit(ctx) }, Want: 5*time.Hour + time.Minute},
		{Name: "reopening never shrinks", Horizon: 10 * time.Minute, Do: func() error {
			_, err := kvbucket.OpenSized(ctx, srv.JS, "sized", "test", 1, kvbucket.FixedHorizon(10*time.Minute), time.Minute)
			return err
		}, Want: 5*time.Hour + time.Minute},
	})
}
