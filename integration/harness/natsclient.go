package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/edgepass/edgepass/plugin/natsedge"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSAccess is how a test reaches the stack's NATS with the daemon's rights
// (to watch edge heartbeats and inspect the edge bucket, natsedge.DefaultBucket,
// when a check fails).
type NATSAccess struct {
	URL, User, Password string
}

// NATSAccess returns the daemon-side NATS access of the stack.
func (s *Stack) NATSAccess() NATSAccess {
	if s.NATS != nil {
		return NATSAccess{URL: s.NATS.URL, User: s.NATS.Spec.DaemonUser, Password: s.NATS.Spec.DaemonPassword}
	}
	pw, _ := s.Daemon.DaemonNATSPassword() // empty: the connect fails and says so
	return NATSAccess{URL: "nats://" + hostPort(s.Opts.Ports.NATS), User: "edgepass-daemon", Password: pw}
}

// Connect dials the stack's NATS with these rights.
func (a NATSAccess) Connect(name string) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name(name), nats.Timeout(5 * time.Second), nats.MaxReconnects(-1), nats.ReconnectWait(200 * time.Millisecond)}
	if a.User != "" {
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	}
	nc, err := nats.Connect(a.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("harness: connect to NATS at %s: %w", a.URL, err)
	}
	return nc, nil
}

// JetStream connects with these rights (see Connect) and opens JetStream on
// the connection, which the caller closes.
func (a NATSAccess) JetStream(name string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := a.Connect(name)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("harness: JetStream on %s: %w", a.URL, err)
	}
	return nc, js, nil
}

// Heartbeat is an edge replica's heartbeat, with when the harness got it.
type Heartbeat struct {
	natsedge.Heartbeat
	received time.Time
}

// HeartbeatWatcher records the latest heartbeat of every edge replica,
// straight from NATS (it works while the daemon is down).
type HeartbeatWatcher struct {
	nc     *nats.Conn
	mu     sync.Mutex
	latest map[string]Heartbeat
	bad    int
	notify chan struct{}
}

// WatchHeartbeats subscribes to the edge bucket's heartbeat subject.
func WatchHeartbeats(a NATSAccess) (*HeartbeatWatcher, error) {
	nc, err := a.Connect("edgepass-e2e-heartbeats")
	if err != nil {
		return nil, err
	}
	w := &HeartbeatWatcher{nc: nc, latest: map[string]Heartbeat{}, notify: make(chan struct{}, 1)}
	_, err = nc.Subscribe(natsedge.HeartbeatWildcard(natsedge.DefaultBucket), func(m *nats.Msg) {
		var hb Heartbeat
		w.mu.Lock()
		defer w.mu.Unlock()
		if err := json.Unmarshal(m.Data, &hb); err != nil || hb.Replica == "" {
			w.bad++
			return
		}
		hb.received = time.Now()
		w.latest[hb.Replica] = hb
		select {
		case w.notify <- struct{}{}:
		default:
		}
	})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("harness: subscribe to heartbeats: %w", err)
	}
	if err := nc.Flush(); err != nil {
		nc.Close()
		return nil, fmt.Errorf("harness: subscribe to heartbeats: %w", err)
	}
	return w, nil
}

// Latest returns the replica's latest heartbeat.
func (w *HeartbeatWatcher) Latest(replica string) (Heartbeat, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	hb, ok := w.latest[replica]
	return hb, ok
}

// Replicas lists the replicas heard from.
func (w *HeartbeatWatcher) Replicas() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for r := range w.latest {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// WaitFor waits for a heartbeat of replica, received after since, that
// satisfies ok.
func (w *HeartbeatWatcher) WaitFor(replica string, since time.Time, timeout time.Duration, ok func(Heartbeat) bool) (Heartbeat, error) {
	deadline := time.After(timeout)
	for {
		if hb, found := w.Latest(replica); found && !hb.received.Before(since) && ok(hb) {
			return hb, nil
		}
		select {
		case <-w.notify:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			hb, found := w.Latest(replica)
			if !found {
				return hb, fmt.Errorf("no heartbeat from edge replica %q within %s (heard from: %v)", replica, timeout, w.Replicas())
			}
			return hb, fmt.Errorf("edge replica %q: no matching heartbeat within %s; latest: %+v", replica, timeout, hb)
		}
	}
}

// Close unsubscribes.
func (w *HeartbeatWatcher) Close() { w.nc.Close() }

// EdgeKeys lists the keys of the edge bucket (for failure diagnostics: did
// the daemon publish the fact the edge did not apply?).
func EdgeKeys(ctx context.Context, a NATSAccess) ([]string, error) {
	nc, js, err := a.JetStream("edgepass-e2e-inspect")
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	kv, err := js.KeyValue(ctx, natsedge.DefaultBucket)
	if err != nil {
		return nil, fmt.Errorf("harness: open edge bucket %s: %w", natsedge.DefaultBucket, err)
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, err
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys, nil
}
