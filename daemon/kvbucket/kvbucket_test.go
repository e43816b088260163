package kvbucket_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgepass/edgepass/daemon/internal/natstest"
	"github.com/edgepass/edgepass/daemon/kvbucket"
)

// Every bucket is on disk with one value per key; reopening with another
// TTL updates the bucket instead of failing.
func TestOpenAppliesTheStoragePolicy(t *testing.T) {
	s := natstest.Start(t)
	ctx := natstest.Context(t)
	for _, ttl := range []time.Duration{time.Hour, 2 * time.Hour} {
		kv, err := kvbucket.Open(ctx, s.JS, "policy", "test bucket", ttl, 0)
		if err != nil {
			t.Fatal(err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cfg := st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config
		if cfg.Storage != jetstream.FileStorage || cfg.MaxMsgsPerSubject != 1 || cfg.Replicas != 1 || cfg.MaxAge != ttl {
			t.Fatalf("bucket config: storage %v, history %d, replicas %d, max age %s; want file, 1, 1, %s",
				cfg.Storage, cfg.MaxMsgsPerSubject, cfg.Replicas, cfg.MaxAge, ttl)
		}
	}
	if _, err := kvbucket.Open(ctx, s.JS, "bad name", "", 0, 1); err == nil {
		t.Fatal("a bucket name with a space was accepted")
	}
}

// A stream leader election answers nothing for a few seconds: reads and
// writes retry through it; any other error returns at once.
func TestRetryRidesOutLeaderElection(t *testing.T) {
	calls := 0
	err := kvbucket.Retry(context.Background(), func() error {
		calls++
		if calls < 3 {
			return jetstream.ErrNoStreamResponse
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("Retry = %v after %d calls, want nil after 3", err, calls)
	}
	calls = 0
	boom := errors.New("bucket gone")
	if err := kvbucket.Retry(context.Background(), func() error { calls++; return boom }); !errors.Is(err, boom) || calls != 1 {
		t.Fatalf("a non-transient error: %v after %d calls", err, calls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls = 0
	if err := kvbucket.Retry(ctx, func() error { calls++; return nats.ErrNoResponders }); !errors.Is(err, nats.ErrNoResponders) || calls != 1 {
		t.Fatalf("a cancelled context: %v after %d calls", err, calls)
	}
}
