package natsedge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand"
	"net"
	"strconv"
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
	Resyncs          uint64 // consumers recreated after a gap, stall or error
	Gaps             uint64 // consumer sequence gaps seen
	Stalls           uint64 // consumers silent for three idle heartbeats
	FlowControls     uint64 // flow-control requests answered
	Delivered        uint64 // KV entries received
	Oversized        uint64 // entries skipped for exceeding the client's size limit
	Malformed        uint64 // deliveries skipped for a bad header or reply subject
	Heartbeats       uint64 // heartbeats published
	ProtocolErrors   uint64 // connections dropped for a protocol violation
	Connected        bool
	Server           string // the server currently connected to, without credentials
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
	missingSince time.Time
	lastErr      string
	lastErrAt    time.Time
	rnd          *mrand.Rand
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
	w := &Watcher{
		s:      s,
		key:    key,
		state:  edgestate.New(),
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
		rnd:    mrand.New(mrand.NewSource(time.Now().UnixNano())),
	}
	go w.run()
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

// run connects, follows the bucket, and reconnects until Close.
func (w *Watcher) run() {
	defer close(w.done)
	attempt := 0
	next := 0
	for {
		if w.ctx.Err() != nil {
			return
		}
		u := w.s.servers[next%len(w.s.servers)]
		next++
		c, err := w.s.dial(w.ctx, u, w.setConn)
		if err != nil {
			w.setConn(nil)
			if w.ctx.Err() != nil {
				return
			}
			w.count(func(st *Stats) { st.ConnectFailures++ })
			w.logErr("", err)
			if next%len(w.s.servers) != 0 {
				continue // try the rest of the list before backing off
			}
			attempt++
			if !w.sleep(w.backoff(attempt, backoffCap)) {
				return
			}
			continue
		}
		w.setConn(c.nc)
		w.count(func(st *Stats) {
			st.Connects++
			st.Connected = true
			st.Server = u.redact
		})
		w.logf("connected to %s (server %s, version %s)", u.redact, c.info.ServerID, c.info.Version)
		began := time.Now()
		err = w.safeSession(c)
		c.nc.Close()
		w.setConn(nil)
		w.state.SetSynced(false)
		w.count(func(st *Stats) {
			st.Disconnects++
			st.Connected = false
			st.Server = ""
			if errors.Is(err, errProtocol) {
				st.ProtocolErrors++
			}
		})
		if w.ctx.Err() != nil {
			return
		}
		w.logErr("connection to "+u.redact+" lost: ", err)
		if time.Since(began) > 10*time.Second {
			attempt = 0
		}
		attempt++
		if !w.sleep(w.backoff(attempt, backoffCap)) {
			return
		}
	}
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

// event is one frame (or the read error that ended the connection).
type event struct {
	f   frame
	err error
}

// readLoop forwards frames to the session until the connection fails or the
// session ends. The channel is bounded: a slow session slows the reader,
// which slows the server (TCP back-pressure) rather than growing memory.
func readLoop(c *conn, out chan event, stop chan struct{}) {
	defer func() {
		if r := recover(); r != nil {
			c.nc.Close()
			select {
			case out <- event{err: fmt.Errorf("internal error reading from %s (please report): %v", c.server.redact, r)}:
			case <-stop:
			}
		}
	}()
	for {
		f, err := c.p.next()
		if err == nil && f.kind == opInfo {
			c.p.setMaxPayload(f.info.MaxPayload)
		}
		select {
		case out <- event{f: f, err: err}:
		case <-stop:
			return
		}
		if err != nil {
			return
		}
	}
}

// Consumer phases within a session.
const (
	phaseWait     = iota // waiting until nextCreate to create a consumer
	phaseCreating        // request sent, waiting for the reply
	phaseActive          // consumer confirmed and delivering
)

// session is the state of one connection.
type session struct {
	w       *Watcher
	c       *conn
	inbox   string
	nextSID uint64

	phase       int
	deliverSID  uint64
	consumer    string
	expectDseq  uint64
	reqSubject  string
	reqDeadline time.Time
	nextCreate  time.Time
	createFails int
	lastDeliver time.Time
	lastResync  time.Time

	pingsOut  int
	lastPing  time.Time
	lastBeat  time.Time
	lastPrune time.Time
	reqN      uint64
	buf       []byte
}

var errStale = errors.New("server stopped answering PINGs")

// newInbox returns a private, unguessable inbox prefix (128 random bits): only
// the server's deliveries may reach the consumer's deliver subject.
func newInbox() string {
	var b [16]byte
	rand.Read(b[:]) // never fails since Go 1.24
	return "_INBOX." + hex.EncodeToString(b[:])
}

// session follows the bucket on c until the connection fails or the watcher
// closes.
func (w *Watcher) session(c *conn) error {
	// At most 32 frames (of at most maxKeepPayload each) wait here.
	events := make(chan event, 32)
	stop := make(chan struct{})
	defer close(stop)
	go readLoop(c, events, stop)

	now := time.Now()
	ss := &session{w: w, c: c, inbox: newInbox(), nextSID: 1, lastPing: now, lastBeat: now, lastPrune: now}
	// Replies to JetStream API requests arrive on <inbox>.r.<n>.
	ss.buf = appendSub(ss.buf[:0], ss.inbox+".r.*", 1)
	if err := ss.flush(); err != nil {
		return err
	}
	ss.nextSID = 2
	ss.phase = phaseWait
	ss.nextCreate = now

	tick := w.s.idleHB / 5
	if tick > time.Second {
		tick = time.Second
	}
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	if err := ss.onTick(now); err != nil {
		return err
	}
	for {
		select {
		case <-w.ctx.Done():
			return nil
		case ev := <-events:
			if ev.err != nil {
				return ev.err
			}
			if err := ss.onFrame(ev.f); err != nil {
				return err
			}
		case t := <-ticker.C:
			if err := ss.onTick(t); err != nil {
				return err
			}
		}
	}
}

// flush writes and empties the session's output buffer.
func (ss *session) flush() error {
	if len(ss.buf) == 0 {
		return nil
	}
	err := ss.c.write(ss.buf)
	if cap(ss.buf) > 64*1024 {
		ss.buf = nil
	} else {
		ss.buf = ss.buf[:0]
	}
	if err != nil {
		return fmt.Errorf("write to %s: %w", ss.c.server.redact, err)
	}
	return nil
}

func (ss *session) onTick(now time.Time) error {
	w := ss.w
	pingEvery := 4 * w.s.idleHB
	if now.Sub(ss.lastPing) >= pingEvery {
		if ss.pingsOut >= maxPingsOut {
			return errStale
		}
		ss.pingsOut++
		ss.lastPing = now
		ss.buf = append(ss.buf, "PING\r\n"...)
	}
	switch ss.phase {
	case phaseWait:
		if !now.Before(ss.nextCreate) {
			ss.createConsumer(now)
		}
	case phaseCreating:
		if now.After(ss.reqDeadline) {
			ss.createFailed(now, fmt.Errorf("no reply to the consumer create request within %s", requestTimeout))
		}
	case phaseActive:
		if now.Sub(ss.lastDeliver) > 3*w.s.idleHB {
			w.count(func(st *Stats) { st.Stalls++ })
			w.logf("no heartbeat from the consumer on stream KV_%s for %s; recreating it from sequence %d", w.s.bucket, now.Sub(ss.lastDeliver).Round(time.Millisecond), w.lastSeq+1)
			ss.resync(now)
		}
	}
	if now.Sub(ss.lastBeat) >= HeartbeatInterval {
		ss.publishHeartbeat(now)
	}
	// Prune every six idle heartbeats (30s by default).
	if now.Sub(ss.lastPrune) >= 6*w.s.idleHB {
		ss.lastPrune = now
		w.state.Prune(now)
	}
	return ss.flush()
}

func (ss *session) onFrame(f frame) error {
	switch f.kind {
	case opPing:
		ss.buf = append(ss.buf, "PONG\r\n"...)
	case opPong:
		ss.pingsOut = 0
	case opErr:
		// A permissions violation leaves the connection up; anything else
		// is followed by the server closing it.
		if strings.Contains(strings.ToLower(f.err), "permissions violation") {
			b := ss.w.s.bucket
			ss.w.logErr("", fmt.Errorf("server %s refused an operation: %s; the edge's NATS user needs publish on $JS.API.CONSUMER.CREATE.KV_%s(.>), $JS.API.CONSUMER.DELETE.KV_%s.>, $JS.FC.KV_%s.> and edgepass.heartbeat.%s, and subscribe on _INBOX.>", ss.c.server.redact, f.err, b, b, b, b))
			break
		}
		return fmt.Errorf("server %s reported: %s", ss.c.server.redact, f.err)
	case opMsg:
		now := time.Now()
		m := f.msg
		switch {
		case m.sid == 1:
			ss.onReply(m, now)
		case m.sid == ss.deliverSID && ss.deliverSID != 0:
			ss.onDelivery(m, now)
		}
	}
	return ss.flush()
}

// consumerConfig is the JetStream consumer config the watcher asks for: an
// ordered, ephemeral push consumer (what nats.go's KV Watch uses).
type consumerConfig struct {
	Description       string `json:"description,omitempty"`
	DeliverSubject    string `json:"deliver_subject"`
	DeliverPolicy     string `json:"deliver_policy"`
	OptStartSeq       uint64 `json:"opt_start_seq,omitempty"`
	AckPolicy         string `json:"ack_policy"`
	FilterSubject     string `json:"filter_subject"`
	FlowControl       bool   `json:"flow_control"`
	IdleHeartbeat     int64  `json:"idle_heartbeat"`
	MemStorage        bool   `json:"mem_storage"`
	InactiveThreshold int64  `json:"inactive_threshold"`
	ReplayPolicy      string `json:"replay_policy"`
	HeadersOnly       bool   `json:"headers_only"`
	Replicas          int    `json:"num_replicas"`
}

type createRequest struct {
	Stream string         `json:"stream_name"`
	Config consumerConfig `json:"config"`
}

type apiError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

type createResponse struct {
	Error      apiError `json:"error"`
	Name       string   `json:"name"`
	NumPending uint64   `json:"num_pending"`
}

// JetStream API error code for a missing stream.
const jsErrStreamNotFound = 10059

// createConsumer subscribes a fresh deliver subject and asks the server for a
// consumer on it, from the last applied sequence + 1 (or everything).
func (ss *session) createConsumer(now time.Time) {
	w := ss.w
	ss.deliverSID = ss.nextSID
	ss.nextSID++
	deliver := ss.inbox + ".d." + strconv.FormatUint(ss.deliverSID, 10)
	ss.buf = appendSub(ss.buf, deliver, ss.deliverSID)
	cc := consumerConfig{
		Description:       "edgepass edge " + clip(w.s.replica, 64),
		DeliverSubject:    deliver,
		DeliverPolicy:     "last_per_subject",
		AckPolicy:         "none",
		FilterSubject:     w.s.kvPrefix + ">",
		FlowControl:       true,
		IdleHeartbeat:     int64(w.s.idleHB),
		MemStorage:        true,
		InactiveThreshold: int64(inactiveThreshold),
		ReplayPolicy:      "instant",
		HeadersOnly:       false,
		Replicas:          1,
	}
	if w.lastSeq > 0 {
		cc.DeliverPolicy = "by_start_sequence"
		cc.OptStartSeq = w.lastSeq + 1
	}
	body, _ := json.Marshal(createRequest{Stream: w.s.stream, Config: cc})
	ss.reqN++
	ss.reqSubject = ss.inbox + ".r." + strconv.FormatUint(ss.reqN, 10)
	ss.buf = appendPub(ss.buf, "$JS.API.CONSUMER.CREATE."+w.s.stream, ss.reqSubject, nil, body)
	ss.phase = phaseCreating
	ss.reqDeadline = now.Add(requestTimeout)
	ss.expectDseq = 1
	ss.consumer = ""
}

// createFailed schedules another attempt with backoff, logging err unless nil.
func (ss *session) createFailed(now time.Time, err error) {
	w := ss.w
	ss.dropConsumer()
	ss.createFails++
	ss.phase = phaseWait
	ss.nextCreate = now.Add(w.backoff(ss.createFails, createBackoffCap))
	ss.reqSubject = ""
	if err != nil {
		w.logErr("cannot watch bucket "+w.s.bucket+": ", err)
	}
}

// dropConsumer unsubscribes the current deliver subject and deletes the
// consumer on the server (its inactive threshold would remove it anyway).
func (ss *session) dropConsumer() {
	w := ss.w
	if ss.deliverSID != 0 {
		ss.buf = appendUnsub(ss.buf, ss.deliverSID)
		ss.deliverSID = 0
	}
	if ss.consumer != "" {
		ss.reqN++
		ss.buf = appendPub(ss.buf, "$JS.API.CONSUMER.DELETE."+w.s.stream+"."+ss.consumer, ss.inbox+".r."+strconv.FormatUint(ss.reqN, 10), nil, nil)
		ss.consumer = ""
	}
}

// resync recreates the consumer from the last applied sequence + 1.
func (ss *session) resync(now time.Time) {
	ss.w.count(func(st *Stats) { st.Resyncs++ })
	ss.w.state.SetSynced(false)
	ss.dropConsumer()
	ss.phase = phaseWait
	// A consumer that keeps failing the same way should not spin.
	rapid := now.Sub(ss.lastResync) < time.Second
	ss.lastResync = now
	if rapid {
		ss.nextCreate = now.Add(time.Second)
		return
	}
	ss.createConsumer(now)
}

// onReply handles a reply to a JetStream API request.
func (ss *session) onReply(m *message, now time.Time) {
	w := ss.w
	if ss.phase != phaseCreating || m.subject != ss.reqSubject {
		return // a late reply, or the reply to a consumer delete
	}
	if m.status == 503 {
		ss.createFailed(now, errors.New("no JetStream responders (is JetStream enabled on the server and the account?)"))
		return
	}
	if m.status != 0 || m.badHeader || m.oversized {
		ss.createFailed(now, fmt.Errorf("unexpected reply to the consumer create request (status %d %s)", m.status, clip(m.description, 64)))
		return
	}
	var r createResponse
	if err := json.Unmarshal(m.data, &r); err != nil {
		ss.createFailed(now, fmt.Errorf("bad reply to the consumer create request: %v", err))
		return
	}
	if r.Error.Code != 0 || r.Error.ErrCode != 0 {
		if r.Error.ErrCode == jsErrStreamNotFound {
			if w.missingSince.IsZero() {
				w.logf("bucket %s does not exist yet (no stream KV_%s); waiting for the edgepass daemon to create it", w.s.bucket, w.s.bucket)
				w.missingSince = now
			}
			ss.createFailed(now, nil) // logged once above, not on every retry
			return
		}
		ss.createFailed(now, fmt.Errorf("server refused the consumer: %s (code %d, err_code %d)", clip(r.Error.Description, 200), r.Error.Code, r.Error.ErrCode))
		return
	}
	if r.Name == "" {
		ss.createFailed(now, errors.New("reply to the consumer create request has no consumer name"))
		return
	}
	if !w.missingSince.IsZero() {
		w.logf("bucket %s is available; following it", w.s.bucket)
		w.missingSince = time.Time{}
	}
	ss.consumer = r.Name
	ss.phase = phaseActive
	ss.createFails = 0
	ss.lastDeliver = now
	ss.reqSubject = ""
	w.count(func(st *Stats) { st.ConsumersCreated++ })
	w.state.Touch(now)
	if r.NumPending == 0 && ss.expectDseq == 1 {
		ss.markSynced(now)
	}
}

// markSynced records that the edge has caught up and reports it once.
func (ss *session) markSynced(now time.Time) {
	if ss.w.state.Synced() {
		return
	}
	ss.w.state.SetSynced(true)
	ss.publishHeartbeat(now)
}

// onDelivery handles a message on the consumer's deliver subject.
func (ss *session) onDelivery(m *message, now time.Time) {
	w := ss.w
	if m.status != 0 {
		ss.onStatus(m, now)
		return
	}
	a, ok := parseAck(m.reply)
	if !ok || a.stream != w.s.stream {
		w.count(func(st *Stats) { st.Malformed++ })
		return
	}
	ss.lastDeliver = now
	if a.consumerSeq != ss.expectDseq {
		w.count(func(st *Stats) { st.Gaps++ })
		w.logf("consumer sequence gap on stream KV_%s (got %d, want %d); recreating the consumer from sequence %d", w.s.bucket, a.consumerSeq, ss.expectDseq, w.lastSeq+1)
		ss.resync(now)
		return
	}
	ss.expectDseq++
	if ss.phase == phaseCreating && ss.consumer == "" {
		ss.consumer = a.consumer
	}
	w.mu.Lock()
	w.stats.Delivered++
	w.mu.Unlock()
	prefix := w.s.kvPrefix
	switch {
	case a.streamSeq <= w.lastSeq:
		// Already applied (a resync never asks for these, but be safe).
	case m.oversized:
		w.lastSeq = a.streamSeq
		w.count(func(st *Stats) { st.Oversized++ })
		w.state.Touch(now)
	case m.badHeader || !strings.HasPrefix(m.subject, prefix):
		w.lastSeq = a.streamSeq
		w.count(func(st *Stats) { st.Malformed++ })
		w.state.Touch(now)
	default:
		w.lastSeq = a.streamSeq
		op := m.header("KV-Operation")
		// Apply counts and reports bad entries; they are never fatal.
		w.state.Apply(m.subject[len(prefix):], op, m.data, a.streamSeq, now)
	}
	if a.pending == 0 {
		ss.markSynced(now)
	}
}

// onStatus handles heartbeats, flow control and errors on the deliver subject.
func (ss *session) onStatus(m *message, now time.Time) {
	w := ss.w
	if m.status != 100 {
		w.logf("consumer on stream KV_%s reported %d %s; recreating it", w.s.bucket, m.status, clip(m.description, 64))
		ss.resync(now)
		return
	}
	ss.lastDeliver = now
	w.state.Touch(now)
	if strings.HasPrefix(m.description, "FlowControl") {
		if m.reply != "" {
			ss.buf = appendPub(ss.buf, m.reply, "", nil, nil)
			w.count(func(st *Stats) { st.FlowControls++ })
		}
		return
	}
	// Idle heartbeat. A stalled consumer names the flow-control reply it
	// is waiting for.
	if fc := m.header("Nats-Consumer-Stalled"); fc != "" && len(fc) <= maxSubjectLen && !strings.ContainsAny(fc, " \t\r\n") {
		ss.buf = appendPub(ss.buf, fc, "", nil, nil)
		w.count(func(st *Stats) { st.FlowControls++ })
	}
	if last := m.header("Nats-Last-Consumer"); last != "" {
		n, ok := parseUint(last)
		if ok && n >= ss.expectDseq {
			w.count(func(st *Stats) { st.Gaps++ })
			w.logf("heartbeat shows missed messages on stream KV_%s (server delivered %d, got %d); recreating the consumer from sequence %d", w.s.bucket, n, ss.expectDseq-1, w.lastSeq+1)
			ss.resync(now)
			return
		}
	}
	if ss.phase == phaseActive {
		// The server only sends idle heartbeats once nothing is pending.
		ss.markSynced(now)
	}
}

// Heartbeat is what each edge replica reports every HeartbeatInterval on
// HeartbeatSubject(bucket), so the daemon can show every replica's sync state.
type Heartbeat struct {
	Replica         string `json:"replica"`
	Bucket          string `json:"bucket"`
	Seq             uint64 `json:"seq"` // last applied stream sequence
	Synced          bool   `json:"synced"`
	HeardAgoMs      int64  `json:"heardAgoMs"` // -1: never heard from NATS
	RevokedSessions int    `json:"revokedSessions"`
	RevokedUsers    int    `json:"revokedUsers"`
	Groups          int    `json:"groups"`
	Rejected        uint64 `json:"rejected"`
	At              int64  `json:"at"` // unix ms, the edge's clock
}

// HeartbeatSubject is where edges of the bucket publish their heartbeats.
func HeartbeatSubject(bucket string) string { return "edgepass.heartbeat." + bucket }

func (ss *session) publishHeartbeat(now time.Time) {
	w := ss.w
	ss.lastBeat = now
	st := w.state.Stats()
	ws := w.Stats()
	hb := Heartbeat{
		Replica:         w.s.replica,
		Bucket:          w.s.bucket,
		Seq:             w.lastSeq,
		Synced:          w.state.Synced(),
		HeardAgoMs:      -1,
		RevokedSessions: st.Sessions,
		RevokedUsers:    st.Users,
		Groups:          st.Groups,
		Rejected:        st.Rejected + ws.Oversized + ws.Malformed,
		At:              now.UnixMilli(),
	}
	if lh := w.state.LastHeard(); !lh.IsZero() {
		hb.HeardAgoMs = now.Sub(lh).Milliseconds()
		if hb.HeardAgoMs < 0 {
			hb.HeardAgoMs = 0
		}
	}
	body, err := json.Marshal(hb)
	if err != nil {
		return
	}
	ss.buf = appendPub(ss.buf, HeartbeatSubject(w.s.bucket), "", nil, body)
	w.count(func(st *Stats) { st.Heartbeats++ })
}
