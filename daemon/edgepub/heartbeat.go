package edgepub

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/edgepass/edgepass/plugin/natsedge"
	"github.com/edgepass/edgepass/plugin/policy"
	"github.com/nats-io/nats.go"
)

// Limits on heartbeats, which any edge credential can forge for its own edge
// name: they bound memory, never grant anything.
const (
	MaxHeartbeatSize = 4 << 10
	MaxReplicaID     = 256
	// MaxReplicas bounds the replicas tracked over all edge names.
	MaxReplicas = 1000
	// MaxReplicasPerEdge bounds the replicas tracked per edge name: one
	// credential inventing replica ids evicts only its own oldest entries.
	MaxReplicasPerEdge = 32
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

// replicaKey identifies a replica: its edge name (from the subject) and the
// replica id it reports.
type replicaKey struct {
	edge, replica string
}

// Heartbeats keeps the latest heartbeat of every edge replica.
type Heartbeats struct {
	bucket   string
	sub      *nats.Subscription
	now      func() time.Time
	lastSeq  func() uint64
	logger   *slog.Logger
	mu       sync.Mutex
	latest   map[replicaKey]EdgeStatus
	perEdge  map[string]int
	rejected atomic.Uint64
}

// HeartbeatOptions configures the collector.
type HeartbeatOptions struct {
	// LastSeq reports the edge bucket's latest stream sequence known to the
	// daemon (Follower.State().LastSeq), to compute Behind; optional.
	LastSeq func() uint64
	Logger  *slog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

func newHeartbeats(bucket string, o HeartbeatOptions) *Heartbeats {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Heartbeats{bucket: bucket, now: o.Now, lastSeq: o.LastSeq, logger: o.Logger, latest: map[replicaKey]EdgeStatus{}, perEdge: map[string]int{}}
}

// SubscribeHeartbeats listens on edgepass.heartbeat.<bucket>.* and takes
// each heartbeat's edge name from its subject, which the edge's NATS
// permissions pin to its own name.
func SubscribeHeartbeats(nc *nats.Conn, bucket string, o HeartbeatOptions) (*Heartbeats, error) {
	h := newHeartbeats(bucket, o)
	prefix := natsedge.HeartbeatSubject(bucket, "")
	sub, err := nc.Subscribe(natsedge.HeartbeatWildcard(bucket), func(m *nats.Msg) {
		edge := strings.TrimPrefix(m.Subject, prefix)
		if err := h.Record(edge, m.Data); err != nil {
			h.logger.Debug("edgepub: ignoring heartbeat", "edge", edge, "err", err)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("edgepub: subscribe to heartbeats: %w", err)
	}
	h.sub = sub
	return h, nil
}

// Record stores one heartbeat message received on the heartbeat subject of
// the edge named edge; malformed ones, and ones whose payload names another
// edge, are refused and counted. An edge name holds at most
// MaxReplicasPerEdge replicas: a new one evicts that edge's least recently
// heard replica, never another edge's.
func (h *Heartbeats) Record(edge string, data []byte) error {
	if !natsedge.ValidEdgeName(edge) {
		h.rejected.Add(1)
		return errors.New("edgepub: heartbeat on a subject without a valid edge name")
	}
	hb, err := parseHeartbeat(data, h.bucket)
	if err != nil {
		h.rejected.Add(1)
		return err
	}
	if hb.Edge != "" && hb.Edge != edge {
		// Attack: a credential reporting as another edge.
		h.rejected.Add(1)
		return fmt.Errorf("edgepub: heartbeat on edge %q's subject claims edge %q", edge, clipString(hb.Edge, 64))
	}
	hb.Edge = edge
	now := h.now()
	k := replicaKey{edge: edge, replica: hb.Replica}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.expireLocked(now)
	if _, known := h.latest[k]; !known {
		if h.perEdge[edge] >= MaxReplicasPerEdge {
			h.evictOldestLocked(edge)
		} else if len(h.latest) >= MaxReplicas {
			h.rejected.Add(1)
			return fmt.Errorf("edgepub: heartbeat from %s/%q: already tracking %d replicas", edge, hb.Replica, MaxReplicas)
		}
		h.perEdge[edge]++
	}
	h.latest[k] = EdgeStatus{Heartbeat: hb, Received: now}
	return nil
}

// evictOldestLocked drops the least recently heard replica of edge.
func (h *Heartbeats) evictOldestLocked(edge string) {
	var oldest replicaKey
	var at time.Time
	found := false
	for k, st := range h.latest {
		if k.edge != edge {
			continue
		}
		if !found || st.Received.Before(at) || st.Received.Equal(at) && k.replica < oldest.replica {
			oldest, at, found = k, st.Received, true
		}
	}
	if found {
		h.deleteLocked(oldest)
	}
}

func (h *Heartbeats) deleteLocked(k replicaKey) {
	delete(h.latest, k)
	if h.perEdge[k.edge] <= 1 {
		delete(h.perEdge, k.edge)
	} else {
		h.perEdge[k.edge]--
	}
}

func clipString(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
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
	case len(hb.Version) > MaxReplicaID || !utf8.ValidString(hb.Version) || hasControl(hb.Version):
		return hb, errors.New("edgepub: heartbeat: invalid version")
	case hb.Edge != "" && !natsedge.ValidEdgeName(hb.Edge):
		return hb, errors.New("edgepub: heartbeat: invalid edge name")
	case hb.Bucket != "" && hb.Bucket != bucket:
		return hb, fmt.Errorf("edgepub: heartbeat for bucket %q, want %q", hb.Bucket, bucket)
	case hb.HeardAgoMs < 0 || hb.RevokedSessions < 0 || hb.RevokedUsers < 0 || hb.Groups < 0:
		return hb, errors.New("edgepub: heartbeat: negative count")
	}
	for reason := range hb.Refusals {
		// Attack: an edge credential inflating the daemon's metric series
		// with invented label values.
		if !knownReason[reason] {
			return hb, fmt.Errorf("edgepub: heartbeat: unknown refusal reason %q", clipString(reason, 32))
		}
	}
	hb.Bucket = bucket
	return hb, nil
}

// knownReason holds the refusal reasons a heartbeat may report: the
// policy's reason codes, nothing an edge invents.
var knownReason = func() map[string]bool {
	m := make(map[string]bool, len(policy.Reasons))
	for _, r := range policy.Reasons {
		m[r] = true
	}
	return m
}()

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}

func (h *Heartbeats) expireLocked(now time.Time) {
	for k, st := range h.latest {
		if now.Sub(st.Received) > HeartbeatExpiry {
			h.deleteLocked(k)
		}
	}
}

// List returns every replica heard from in the last HeartbeatExpiry,
// sorted by edge name, then replica id.
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
	sort.Slice(out, func(i, j int) bool {
		if out[i].Edge != out[j].Edge {
			return out[i].Edge < out[j].Edge
		}
		return out[i].Replica < out[j].Replica
	})
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
