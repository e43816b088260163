package edgepub

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/edgepass/edgepass/plugin/natsedge"
	"github.com/nats-io/nats.go"
)

// Limits on heartbeats, which any NATS user allowed to publish them can forge:
// they bound memory, never grant anything.
const (
	MaxHeartbeatSize = 4 << 10
	MaxReplicaID     = 256
	MaxReplicas      = 1000
	// HeartbeatExpiry drops a replica not heard from for this long.
	HeartbeatExpiry = 10 * time.Minute
	// HeartbeatStale marks a replica stale (missed three 5 s heartbeats).
	HeartbeatStale = 15 * time.Second
)

// Heartbeat is one edge replica's report, as it sends it.
type Heartbeat = natsedge.Heartbeat

// EdgeStatus is a replica's latest heartbeat as the daemon sees it.
type EdgeStatus struct {
	Heartbeat
	// Received is when this daemon got the heartbeat (its own clock).
	Received time.Time `json:"received"`
	// Stale: no heartbeat for HeartbeatStale.
	Stale bool `json:"stale"`
	// Behind is how many edge-bucket messages the replica has not applied
	// yet (0 when unknown or caught up).
	Behind uint64 `json:"behind"`
}

// Heartbeats keeps the latest heartbeat of every edge replica.
type Heartbeats struct {
	bucket   string
	sub      *nats.Subscription
	now      func() time.Time
	lastSeq  func() uint64
	logger   *slog.Logger
	mu       sync.Mutex
	latest   map[string]EdgeStatus
	rejected atomic.Uint64
}

// HeartbeatOptions configures the collector.
type HeartbeatOptions struct {
	// LastSeq reports the edge bucket's latest stream sequence known to the
	// daemon (Watcher.State().LastSeq), to compute Behind; optional.
	LastSeq func() uint64
	Logger  *slog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// SubscribeHeartbeats listens on edgepass.heartbeat.<bucket>.
func SubscribeHeartbeats(nc *nats.Conn, bucket string, o HeartbeatOptions) (*Heartbeats, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Heartbeats{bucket: bucket, now: o.Now, lastSeq: o.LastSeq, logger: o.Logger, latest: map[string]EdgeStatus{}}
	sub, err := nc.Subscribe(natsedge.HeartbeatSubject(bucket), func(m *nats.Msg) {
		if err := h.Record(m.Data); err != nil {
			h.logger.Debug("edgepub: ignoring heartbeat", "err", err)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("edgepub: subscribe to heartbeats: %w", err)
	}
	h.sub = sub
	return h, nil
}

// Record stores one heartbeat message; malformed ones are refused and counted.
func (h *Heartbeats) Record(data []byte) error {
	hb, err := parseHeartbeat(data, h.bucket)
	if err != nil {
		h.rejected.Add(1)
		return err
	}
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.expireLocked(now)
	if _, known := h.latest[hb.Replica]; !known && len(h.latest) >= MaxReplicas {
		h.rejected.Add(1)
		return fmt.Errorf("edgepub: heartbeat from %q: already tracking %d replicas", hb.Replica, MaxReplicas)
	}
	h.latest[hb.Replica] = EdgeStatus{Heartbeat: hb, Received: now}
	return nil
}

func parseHeartbeat(data []byte, bucket string) (Heartbeat, error) {
	var hb Heartbeat
	if len(data) > MaxHeartbeatSize {
		return hb, fmt.Errorf("edgepub: heartbeat of %d bytes, limit %d", len(data), MaxHeartbeatSize)
	}
	if err := json.Unmarshal(data, &hb); err != nil {
		return hb, fmt.Errorf("edgepub: heartbeat: %w", err)
	}
	switch {
	case hb.Replica == "" || len(hb.Replica) > MaxReplicaID || !utf8.ValidString(hb.Replica) || hasControl(hb.Replica):
		return hb, errors.New("edgepub: heartbeat: missing or invalid replica id")
	case hb.Bucket != "" && hb.Bucket != bucket:
		return hb, fmt.Errorf("edgepub: heartbeat for bucket %q, want %q", hb.Bucket, bucket)
	case hb.HeardAgoMs < 0 || hb.RevokedSessions < 0 || hb.RevokedUsers < 0 || hb.Groups < 0:
		return hb, errors.New("edgepub: heartbeat: negative count")
	}
	hb.Bucket = bucket
	return hb, nil
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}

func (h *Heartbeats) expireLocked(now time.Time) {
	for id, st := range h.latest {
		if now.Sub(st.Received) > HeartbeatExpiry {
			delete(h.latest, id)
		}
	}
}

// List returns every replica heard from in the last HeartbeatExpiry,
// sorted by replica id.
func (h *Heartbeats) List() []EdgeStatus {
	now := h.now()
	var last uint64
	if h.lastSeq != nil {
		last = h.lastSeq()
	}
	h.mu.Lock()
	h.expireLocked(now)
	out := make([]EdgeStatus, 0, len(h.latest))
	for _, st := range h.latest {
		st.Stale = now.Sub(st.Received) > HeartbeatStale
		if last > st.Seq {
			st.Behind = last - st.Seq
		}
		out = append(out, st)
	}
	h.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Replica < out[j].Replica })
	return out
}

// Rejected counts heartbeats refused as malformed or over the limits.
func (h *Heartbeats) Rejected() uint64 { return h.rejected.Load() }

// Close unsubscribes.
func (h *Heartbeats) Close() error {
	if h.sub == nil {
		return nil
	}
	return h.sub.Unsubscribe()
}
