package natsedge

import (
	"context"
	"fmt"
	mrand "math/rand"
	"net"
	"sync"
	"time"

	"github.com/edgepass/edgepass/plugin/edgestate"
)

// Stats counts what the watcher did, for tests and diagnostics.
type Stats struct {
	Connects         uint64 // successful connections (the first one included)
	ConnectFailures  uint64 // failed connection attempts
	Disconnects      uint64 // established connections lost
	ConsumersCreated uint64 // consumers the server confirmed
	SlotsTaken       uint64 // creates refused because the consumer name was in use (err_code 10148)
	Resyncs          uint64 // consumers recreated after a gap, stall, hijack or error
	Gaps             uint64 // consumer sequence gaps seen
	Stalls           uint64 // consumers silent for three idle heartbeats
	Hijacks          uint64 // consumers found not delivering, or foreign traffic on the deliver subject
	CrossChecks      uint64 // stream INFO answers compared with what was applied
	FlowControls     uint64 // flow-control requests answered
	Delivered        uint64 // KV entries received
	Oversized        uint64 // entries skipped for exceeding the client's size limit
	Malformed        uint64 // deliveries skipped for a bad header or reply subject
	Heartbeats       uint64 // heartbeats published
	ProtocolErrors   uint64 // connections dropped for a protocol violation
	SnapshotChunks   uint64 // snapshot chunks verified and applied at the first sync
	SnapshotRefused  uint64 // snapshot entries refused (unsigned, malformed, inconsistent)
	SnapshotSeq      uint64 // the sequence of the snapshot the first sync started from (0: none)
	DirectGets       uint64 // direct get requests sent while no consumer delivered (the bridge)
	DirectEntries    uint64 // entries applied from direct get answers
	LearnedServers   int    // cluster peers currently known from INFO connect_urls
	Connected        bool
	Server           string // the server currently connected to, without credentials
	Consumer         string // the consumer currently followed ("" while none)
}

// Watcher follows the edge KV bucket over NATS and feeds an edgestate.State.
// One runs per distinct Config for the whole process (see Shared, in
// registry.go). It owns two goroutines: run (reconnect.go), which connects
// and follows the bucket over one link at a time (link.go), and pruneLoop
// (prune.go), which drops expired facts from the state.
type Watcher struct {
	s      *settings
	key    string // canonicalKey of its Config: its entry in the registry
	state  *edgestate.State
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns
	pruned chan struct{} // closed when pruneLoop returns

	mu     sync.Mutex
	stats  Stats
	cur    net.Conn
	closed bool

	// Everything below is owned by the run goroutine: the reconnect loop
	// and the link it runs. It outlives a link.

	// Where the edge stands in the stream (delivery.go, bridge.go,
	// crosscheck.go).
	lastSeq   uint64
	floor     uint64 // stream sequences up to here need no delivery (see onCreateReply)
	knownLast uint64 // the stream's last sequence in the latest STREAM.INFO answer
	// infoDeniedLogged: a refused STREAM.INFO (no cross-check on that
	// connection, link.infoDenied) was logged; logged once.
	infoDeniedLogged bool
	// The consumer of the link that ended last (link.go): the next link
	// deletes it and starts the bridge's outage at prevLost.
	prevConsumer  string
	prevSlot      int
	prevLost      time.Time
	missingLogged bool // the bucket's stream did not exist, logged (consumer.go)
	// Log throttles (this file).
	lastErr   string
	lastErrAt time.Time
	rejLogAt  time.Time
	rejQuiet  int // refused entries not logged since rejLogAt
	// The first sync reads the daemon's snapshot (snapshot.> subjects)
	// before the bucket (snapshot.go): snap collects it, snapDone ends that
	// phase for good (a snapshot adopted, none complete, or the attempt
	// failed).
	snap     *edgestate.SnapshotLoader
	snapDone bool
	// Server choice and backoff jitter (reconnect.go), consumer slots
	// (consumer.go).
	rnd  *mrand.Rand
	pool serverPool
	// The direct-get bridge (bridge.go): a refusal (link.directDenied) is
	// logged once; bridgeOutage from its start until a consumer delivers
	// again (one log line per outage, carried across reconnects).
	directDeniedLogged bool
	bridgeOutage       bool
}

// start creates the watcher for s and starts its goroutines; it never
// blocks on the network. key is its registry entry.
func start(s *settings, key string) *Watcher {
	ctx, cancel := context.WithCancel(context.Background())
	st := edgestate.New()
	if s.anchors != nil {
		st = edgestate.NewWithAnchors(s.anchors)
	}
	w := &Watcher{
		s:      s,
		key:    key,
		state:  st,
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
		pruned: make(chan struct{}),
		rnd:    mrand.New(mrand.NewSource(time.Now().UnixNano())),
	}
	// Edges spread over the configured servers.
	w.pool.configured = append(w.pool.configured, s.servers...)
	w.shuffle(w.pool.configured)
	go w.run()
	go w.pruneLoop()
	return w
}

// State is the edge state this watcher keeps up to date.
func (w *Watcher) State() *edgestate.State {
	return w.state
}

// Stats returns a snapshot of the watcher's counters.
func (w *Watcher) Stats() Stats {
	w.mu.Lock()
	st := w.stats
	w.mu.Unlock()
	return st
}

// Close stops the watcher and drops its connection (tests only; Traefik never
// stops plugins). A later Shared call with the same Config starts a new one.
func (w *Watcher) Close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	c := w.cur
	w.mu.Unlock()
	w.cancel()
	if c != nil {
		c.Close()
	}
	unshare(w)
	// Both goroutines end at once; wait 10s at most in all.
	t := time.NewTimer(10 * time.Second)
	timedOut := false
	select {
	case <-w.done:
	case <-t.C:
		timedOut = true
	}
	if !timedOut {
		select {
		case <-w.pruned:
		case <-t.C:
		}
	}
	t.Stop()
}

// logf forwards to the configured logger; a logger that panics must not take
// the watcher (and Traefik) down.
func (w *Watcher) logf(format string, args ...any) {
	defer func() { recover() }()
	w.s.logf("natsedge: "+format, args...)
}

// logErr logs err unless the same message was logged in the last minute, so a
// server that stays down does not flood the log. Run goroutine only.
func (w *Watcher) logErr(prefix string, err error) {
	msg := prefix + err.Error()
	now := time.Now()
	if msg == w.lastErr && now.Sub(w.lastErrAt) < time.Minute {
		return
	}
	w.lastErr, w.lastErrAt = msg, now
	w.logf("%s", msg)
}

// logRejected reports an entry the edge state refused: the key and why,
// never the value; at most one line a minute, counting the ones left out.
// Run goroutine only.
func (w *Watcher) logRejected(key string, seq uint64, err error, now time.Time) {
	if !w.rejLogAt.IsZero() && now.Sub(w.rejLogAt) < time.Minute {
		w.rejQuiet++
		return
	}
	more := ""
	if w.rejQuiet > 0 {
		more = fmt.Sprintf(" (and %d more refused entries since the last report)", w.rejQuiet)
	}
	w.rejLogAt, w.rejQuiet = now, 0
	w.logf("refused entry %q of bucket %s at sequence %d: %s%s", clip(key, 200), w.s.bucket, seq, clip(err.Error(), 300), more)
}

// setConn records the connection Close must close (nil: none); one that
// arrives after Close is closed at once.
func (w *Watcher) setConn(c net.Conn) {
	w.mu.Lock()
	closed := w.closed
	w.cur = c
	w.mu.Unlock()
	if closed && c != nil {
		c.Close()
	}
}

// count updates the counters under the lock.
func (w *Watcher) count(f func(st *Stats)) {
	w.mu.Lock()
	f(&w.stats)
	w.mu.Unlock()
}
