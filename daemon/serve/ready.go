package serve

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgepass/edgepass/daemon/admin"
	"github.com/edgepass/edgepass/daemon/oidcflow"
)

// Readiness timing: probes are bounded by readyTimeout and their results
// reused for readyCache (so frequent kubelet probes do not hammer NATS);
// readyInterval refreshes edgepass_ready and edgepass_*_up between probes.
const (
	readyTimeout  = 2 * time.Second
	readyCache    = 3 * time.Second
	readyInterval = 10 * time.Second
)

// jetStreamProbe is the "jetstream" readiness check: issuing a session
// writes to the session bucket and revoking one publishes to the edge
// bucket's stream, so it writes and reads back a key of its own in the
// session bucket and asks the edge stream's leader for its state. A lost
// quorum or a deleted bucket then makes the replica not ready, instead of
// every revocation failing with 500 behind a green /readyz.
type jetStreamProbe struct {
	sessions jetstream.KeyValue
	edge     jetstream.Stream
	bucket   string
	// key is this process's probe key: no other replica writes it, so
	// the read-back is this write's. Session lists skip it (not a session).
	key string
}

// newJetStreamProbe opens the handles the probe uses.
func newJetStreamProbe(ctx context.Context, js jetstream.JetStream, sessionBucket, edgeBucket string) (*jetStreamProbe, error) {
	kv, err := js.KeyValue(ctx, sessionBucket)
	if err != nil {
		return nil, fmt.Errorf("serve: readiness probe: session bucket %s: %w", sessionBucket, err)
	}
	st, err := js.Stream(ctx, "KV_"+edgeBucket)
	if err != nil {
		return nil, fmt.Errorf("serve: readiness probe: edge bucket %s: %w", edgeBucket, err)
	}
	return &jetStreamProbe{sessions: kv, edge: st, bucket: sessionBucket, key: "readyz." + rand.Text()}, nil
}

// Ping writes a fresh value, reads it back and checks the edge stream.
func (p *jetStreamProbe) Ping(ctx context.Context) error {
	val := []byte(strconv.FormatInt(time.Now().UnixNano(), 10))
	rev, err := p.sessions.Put(ctx, p.key, val)
	if err != nil {
		return fmt.Errorf("jetstream: write to bucket %s: %w", p.bucket, err)
	}
	e, err := p.sessions.Get(ctx, p.key)
	if err != nil {
		return fmt.Errorf("jetstream: read back from bucket %s: %w", p.bucket, err)
	}
	if e.Revision() < rev || (e.Revision() == rev && !bytes.Equal(e.Value(), val)) {
		return fmt.Errorf("jetstream: bucket %s returned revision %d, older than the write (%d)", p.bucket, e.Revision(), rev)
	}
	if _, err := p.edge.Info(ctx); err != nil {
		return fmt.Errorf("jetstream: edge stream %s: %w", p.edge.CachedInfo().Config.Name, err)
	}
	return nil
}

// remove deletes the probe key (best effort, on shutdown).
func (p *jetStreamProbe) remove(ctx context.Context) {
	_ = p.sessions.Purge(ctx, p.key)
}

// readinessChecks are /readyz's checks: JetStream writable now, IdP
// discovered once (its state now is reported, but an IdP outage later does
// not take /verify out of the Service).
func readinessChecks(js *jetStreamProbe, idp *oidcflow.Handler) []admin.Check {
	return []admin.Check{
		{Name: admin.CheckJetStream, Probe: js,
			Down: "cannot write to and read back from the daemon's JetStream buckets: sessions cannot be issued or revoked; see the daemon log and the NATS servers (quorum, storage)"},
		{Name: admin.CheckIdP, Probe: idp, Once: idp.Discovered,
			Down:    "the IdP does not answer now: new sign-ins fail, while sessions, /verify and revocation keep working; see the daemon log",
			Pending: "IdP discovery has not succeeded yet, so no one can sign in; check oidc.issuer and that the IdP is reachable (see the daemon log)"},
	}
}
