package natsedge

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand"
	"net"
	"strings"
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
// One runs per distinct Config for the whole process (see Shared).
type Watcher struct {
	s      *settings
	key    string
	state  *edgestate.State
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	stats  Stats
	cur    net.Conn
	closed bool

	// Owned by the run goroutine.
	lastSeq      uint64
	floor        uint64 // stream sequences up to here need no delivery (see onCreated)
	knownLast    uint64 // the stream's last sequence in the latest STREAM.INFO answer
	infoDenied   bool   // the credential may not ask STREAM.INFO: no cross-check
	prevConsumer string // the consumer of the session that ended last
	prevSlot     int
	prevLost     time.Time
	missingSince time.Time
	lastErr      string
	lastErrAt    time.Time
	rejLogAt     time.Time
	rejQuiet     int // refused entries not logged since rejLogAt
	// The first sync reads the daemon's snapshot (snapshot.> subjects)
	// before the bucket: snap collects it, snapDone ends that phase for
	// good (a snapshot adopted, none complete, or the attempt failed).
	snap     *edgestate.SnapshotLoader
	snapDone bool
	rnd      *mrand.Rand
	pool     serverPool
	// The direct-get bridge (session.go, bridgeState): off on a connection whose server
	// refused it; bridgeOutage from its start until a consumer delivers
	// again (one log line per outage, carried across reconnects).
	directDenied       bool
	directDeniedLogged bool
	bridgeOutage       bool
}

// serverPool is the list of servers to try: the configured ones in random
// order, then the cluster peers the servers announced.
type serverPool struct {
	configured []serverURL
	learned    []serverURL
	next       int
}

func (p *serverPool) all() []serverURL {
	out := make([]serverURL, 0, len(p.configured)+len(p.learned))
	out = append(out, p.configured...)
	return append(out, p.learned...)
}

var (
	sharedMu sync.Mutex
	shared   = map[string]*Watcher{}
)

// Shared returns the process-wide watcher for cfg, starting it in the background
// on first use; it never blocks on the network. Traefik calls New for every
// middleware instance and every reload, so all of them share one connection.
// The first caller's Logf is the one used.
func Shared(cfg Config) (*Watcher, error) {
	key := canonicalKey(cfg)
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if w, ok := shared[key]; ok {
		return w, nil
	}
	s, err := validate(cfg)
	if err != nil {
		return nil, err
	}
	w := start(s, key)
	shared[key] = w
	return w, nil
}

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
		rnd:    mrand.New(mrand.NewSource(time.Now().UnixNano())),
	}
	// Edges spread over the configured servers.
	w.pool.configured = append(w.pool.configured, s.servers...)
	w.shuffle(w.pool.configured)
	go w.run()
	return w
}

// shuffle permutes servers in place (Fisher-Yates; plain code for yaegi).
func (w *Watcher) shuffle(servers []serverURL) {
	for i := len(servers) - 1; i > 0; i-- {
		j := w.rnd.Intn(i + 1)
		servers[i], servers[j] = servers[j], servers[i]
	}
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
	sharedMu.Lock()
	if shared[w.key] == w {
		delete(shared, w.key)
	}
	sharedMu.Unlock()
	t := time.NewTimer(10 * time.Second)
	select {
	case <-w.done:
	case <-t.C:
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
// server that stays down does not flood the log.
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

func (w *Watcher) setConn(c net.Conn) {
	w.mu.Lock()
	closed := w.closed
	w.cur = c
	w.mu.Unlock()
	if closed && c != nil {
		c.Close()
	}
}

func (w *Watcher) count(f func(st *Stats)) {
	w.mu.Lock()
	f(&w.stats)
	w.mu.Unlock()
}

// backoff is the delay before retry number attempt (1-based): exponential,
// capped, with jitter so that many edges do not reconnect in step.
func (w *Watcher) backoff(attempt int, limit time.Duration) time.Duration {
	d := backoffBase
	for i := 1; i < attempt && d < limit; i++ {
		d *= 2
	}
	if d > limit {
		d = limit
	}
	half := int64(d / 2)
	if half <= 0 {
		return d
	}
	return time.Duration(half + w.rnd.Int63n(half+1))
}

// sleep waits for d or until the watcher is closed; false means closed.
func (w *Watcher) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// errLameDuck ends a session whose server announced it is shutting down.
var errLameDuck = errors.New("server is entering lame duck mode (shutting down)")

// run connects, follows the bucket, and reconnects until Close. It walks
// the server list round-robin: a failed server is followed at once by the
// next, and only a whole round of failures waits (with backoff). After a
// lost connection the next server is tried at once, so an edge of a cluster
// is back on a surviving node within a dial timeout.
func (w *Watcher) run() {
	defer close(w.done)
	attempt := 0
	failsInRow := 0
	for {
		if w.ctx.Err() != nil {
			return
		}
		list := w.pool.all()
		u := list[w.pool.next%len(list)]
		w.pool.next = (w.pool.next + 1) % len(list)
		c, err := w.s.dial(w.ctx, u, w.setConn)
		if err != nil {
			w.setConn(nil)
			if w.ctx.Err() != nil {
				return
			}
			w.count(func(st *Stats) { st.ConnectFailures++ })
			w.logErr("", err)
			failsInRow++
			if failsInRow < len(list) {
				continue // try the rest of the list before backing off
			}
			failsInRow = 0
			attempt++
			if !w.sleep(w.backoff(attempt, backoffCap)) {
				return
			}
			continue
		}
		failsInRow = 0
		w.setConn(c.nc)
		w.learn(c.info.ConnectURLs, u)
		w.count(func(st *Stats) {
			st.Connects++
			st.Connected = true
			st.Server = u.redact
		})
		w.logf("connected to %s as edge %q (server %s, version %s)", u.redact, w.s.edge, c.info.ServerID, c.info.Version)
		began := time.Now()
		err = w.safeSession(c)
		c.nc.Close()
		w.setConn(nil)
		w.state.SetSynced(false)
		w.count(func(st *Stats) {
			st.Disconnects++
			st.Connected = false
			st.Server = ""
			st.Consumer = ""
			if errors.Is(err, errProtocol) {
				st.ProtocolErrors++
			}
		})
		if w.ctx.Err() != nil {
			return
		}
		w.logErr("connection to "+u.redact+" lost: ", err)
		if time.Since(began) > 10*time.Second || errors.Is(err, errLameDuck) {
			attempt = 0
		}
		if attempt == 0 {
			// The first retry goes to the next server at once.
			attempt++
			continue
		}
		attempt++
		if !w.sleep(w.backoff(attempt, backoffCap)) {
			return
		}
	}
}

// learn replaces the learned cluster peers with the connect_urls a server
// announced (host:port entries). Announced entries never carry credentials;
// a configured URL's own credentials go only to a peer on the same host.
func (w *Watcher) learn(urls []string, via serverURL) {
	if len(urls) == 0 {
		return
	}
	seen := map[string]bool{}
	for i := 0; i < len(w.pool.configured); i++ {
		seen[w.pool.configured[i].host] = true
	}
	scheme := "nats://"
	if via.tls {
		scheme = "tls://"
	}
	var fresh []serverURL
	for i := 0; i < len(urls) && i < 4*maxLearned && len(fresh) < maxLearned; i++ {
		raw := strings.TrimSpace(urls[i])
		if raw == "" || len(raw) > 300 || strings.ContainsAny(raw, "@/ \t\r\n?#") {
			continue
		}
		u, err := parseServerURL(scheme + raw)
		if err != nil || seen[u.host] {
			continue
		}
		seen[u.host] = true
		u.learned = true
		for j := 0; j < len(w.pool.configured); j++ {
			c := w.pool.configured[j]
			if strings.EqualFold(c.name, u.name) && (c.user != "" || c.token != "") {
				u.user, u.pass, u.token = c.user, c.pass, c.token
				break
			}
		}
		fresh = append(fresh, u)
	}
	// Keep the known peers in their order; new ones go after, shuffled.
	var kept, added []serverURL
	for i := 0; i < len(w.pool.learned); i++ {
		for j := 0; j < len(fresh); j++ {
			if fresh[j].host == w.pool.learned[i].host {
				kept = append(kept, fresh[j])
				break
			}
		}
	}
	for j := 0; j < len(fresh); j++ {
		known := false
		for i := 0; i < len(kept); i++ {
			if kept[i].host == fresh[j].host {
				known = true
				break
			}
		}
		if !known {
			added = append(added, fresh[j])
		}
	}
	w.shuffle(added)
	w.pool.learned = append(kept, added...)
	n := len(w.pool.learned)
	w.count(func(st *Stats) { st.LearnedServers = n })
}

// safeSession runs a session and turns a panic (a bug) into a dropped
// connection: a panic here would take Traefik down with it.
func (w *Watcher) safeSession(c *conn) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error (please report): %v", r)
		}
	}()
	return w.session(c)
}
