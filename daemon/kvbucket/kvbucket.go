// Package kvbucket opens the daemon's JetStream KV buckets with one storage
// policy: file storage (nothing lost on a crash), history 1 (a fact or a
// session is its latest value), replicas as configured.
package kvbucket

import (
	"context"
	"fmt"
	"time"

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
	return kv, nil
}
