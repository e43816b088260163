package kvbucket_test

import (
	"testing"
	"time"

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
