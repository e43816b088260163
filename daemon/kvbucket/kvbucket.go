// Package kvbucket opens the daemon's JetStream KV buckets with one storage
// policy: file storage (nothing lost on a crash), history 1 (a fact or a
// session is its latest value), replicas as configured.
package kvbucket

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Open creates the bucket, or updates its settings when it exists. ttl 0
// keeps entries until deleted; replicas below 1 mean 1.
func Open(ctx context.Context, js jetstream.JetStream, name, description string, ttl time.Duration, replicas int) (jetstream.KeyValue, error) {
	if replicas < 1 {
		replicas = 1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      name,
		Description: description,
		History:     1,
		TTL:         ttl,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("create bucket %s: %w", name, err)
	}
	return resilient{kv}, nil
}

// Transient JetStream failures: while a stream elects a new leader (a NATS
// node died) writes and reads get no answer for a few seconds. A retry
// bounded by RetryFor turns the election into a short delay instead of a
// failed login or a revocation reported as failed after it was published.
const RetryFor = 10 * time.Second

// transient reports an error a stream leader election produces.
func transient(err error) bool {
	return errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrJetStreamNotEnabled)
}

// Retry runs op until it succeeds, fails for a reason other than a leader
// election, RetryFor passes or ctx ends; it returns op's last error.
func Retry(ctx context.Context, op func() error) error {
	deadline := time.Now().Add(RetryFor)
	wait := 100 * time.Millisecond
	for {
		err := op()
		if err == nil || !transient(err) || time.Now().Add(wait).After(deadline) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		if wait < time.Second {
			wait *= 2
		}
	}
}

// resilient is a KeyValue whose reads and writes ride out a stream leader
// election (Retry). Create and Update are conditional, so a retry after a
// write that landed but whose answer was lost fails as a revision conflict,
// which callers already handle by re-reading.
type resilient struct {
	jetstream.KeyValue
}

func (r resilient) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	var e jetstream.KeyValueEntry
	err := Retry(ctx, func() (err error) { e, err = r.KeyValue.Get(ctx, key); return err })
	return e, err
}

func (r resilient) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	var rev uint64
	err := Retry(ctx, func() (err error) { rev, err = r.KeyValue.Put(ctx, key, value); return err })
	return rev, err
}

func (r resilient) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	var rev uint64
	err := Retry(ctx, func() (err error) { rev, err = r.KeyValue.Create(ctx, key, value, opts...); return err })
	return rev, err
}

func (r resilient) Update(ctx context.Context, key string, value []byte, last uint64) (uint64, error) {
	var rev uint64
	err := Retry(ctx, func() (err error) { rev, err = r.KeyValue.Update(ctx, key, value, last); return err })
	return rev, err
}

func (r resilient) Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	return Retry(ctx, func() error { return r.KeyValue.Delete(ctx, key, opts...) })
}

func (r resilient) Purge(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	return Retry(ctx, func() error { return r.KeyValue.Purge(ctx, key, opts...) })
}
