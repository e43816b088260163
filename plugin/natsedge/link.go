package natsedge

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// link is one NATS connection of the watcher and what the edge does on it:
// its consumer, cross-check, bridge and heartbeats. The watcher's run
// goroutine (reconnect.go) runs one link at a time (runLink) and starts a
// new one when it is lost; what must outlive a connection (the last applied
// sequence, the consumer to delete, the first sync's snapshot) lives in the
// Watcher. Everything here is owned by that goroutine.
type link struct {
	w     *Watcher
	c     *conn
	inbox string // the edge's inbox on this connection (newInbox)
	buf   []byte // what to write at the next flush

	// Subscriptions and JetStream API requests (this file).
	nextSID uint64
	reqs    map[string]pendingReq // by reply subject
	reqN    uint64

	// Liveness of the server (this file) and of the heartbeat (heartbeat.go).
	pingsOut int
	lastPing time.Time
	lastBeat time.Time

	// The consumer and its state machine (consumer.go, delivery.go,
	// snapshot.go).
	phase       int
	deliverSID  uint64
	name        string // the consumer requested or held
	slot        int
	confirmed   bool  // the server confirmed the consumer named name
	slotOrder   []int // slots to try for this create, in order
	slotIdx     int
	expectDseq  uint64 // the next consumer sequence: data messages from the current consumer + 1
	createReq   string // reply subject of the outstanding create
	reqDeadline time.Time
	nextCreate  time.Time
	createFails int
	lastDeliver time.Time
	lastResync  time.Time
	// snapshot: the current consumer reads the snapshot.> subjects (the
	// first sync's snapshot phase), not the whole bucket.
	snapshot bool
	// consumerSeen is the highest stream sequence the current consumer
	// delivered (or the one before its start): its heartbeats cannot claim
	// less. The edge's lastSeq may be further on, applied by the bridge.
	consumerSeen uint64

	// Cross-check of the consumer against the stream (crosscheck.go).
	// infoDenied: the server refused STREAM.INFO on this connection, so no
	// cross-check on it (a permission granted later works on the next).
	infoDenied      bool
	nextCheck       time.Time
	behindSince     time.Time
	behindDelivered uint64    // data messages from the consumer when behindSince was set
	resetSince      time.Time // the stream was seen below what was applied

	// The direct-get bridge (bridge.go).
	// directDenied: the server refused direct gets on this connection; the
	// next connection tries again (the permission may have been granted
	// meanwhile).
	directDenied    bool
	noConsumerSince time.Time // when the link last had no active consumer
	peers           []string  // the cluster peers the server announced last
	peerLostAt      time.Time // when an announcement last lacked a peer
	bridgeReq       string    // reply subject of the outstanding direct get ("" none)
	bridgeSent      time.Time
	bridgeFrom      uint64 // the sequence it asked from
	bridgeLast      uint64 // the last sequence it answered with
	bridgeHold      time.Time
	bridgeTrouble   bool // a failed direct get was logged in this outage
}

// errStale ends a link whose server stopped answering PINGs.
var errStale = errors.New("server stopped answering PINGs")

// errLameDuck ends a link whose server announced it is shutting down.
var errLameDuck = errors.New("server is entering lame duck mode (shutting down)")

// safeRunLink runs a link and turns a panic (a bug) into a dropped
// connection: a panic here would take Traefik down with it.
func (w *Watcher) safeRunLink(c *conn) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error (please report): %v", r)
		}
	}()
	return w.runLink(c)
}

// runLink follows the bucket on c until the connection fails or the watcher
// closes: the link's event loop. Frames from readLoop and ticks arrive
// here, one at a time.
func (w *Watcher) runLink(c *conn) error {
	// At most 32 frames (of at most maxKeepPayload each) wait here.
	events := make(chan event, 32)
	stop := make(chan struct{})
	defer close(stop)
	go readLoop(c, events, stop)

	now := time.Now()
	l := &link{w: w, c: c, inbox: newInbox(w.s.edge), nextSID: 1, lastPing: now, lastBeat: now, reqs: map[string]pendingReq{}, slot: -1}
	// Replies to JetStream API requests arrive on <inbox>.r.<n>.
	l.buf = appendSub(l.buf[:0], l.inbox+".r.*", 1)
	l.nextSID = 2
	l.phase = phaseWait
	l.nextCreate = now
	l.nextCheck = now.Add(w.s.crossCheck)
	l.noConsumerSince = now
	if w.prevConsumer != "" && w.prevLost.Before(now) {
		// The outage began when the last connection, and its consumer,
		// was lost.
		l.noConsumerSince = w.prevLost
	}
	l.peers = append([]string(nil), c.info.ConnectURLs...)
	// The consumer of a connection lost moments ago is still on the server
	// (until its inactive threshold): delete it so its slot is free again.
	avoid := -1
	if w.prevConsumer != "" && now.Sub(w.prevLost) < inactiveThreshold-5*time.Second {
		l.request(reqDelete, consumerDeleteSubject(w.s.stream, w.prevConsumer), nil, now)
		avoid = w.prevSlot
	}
	w.prevConsumer = ""
	defer func() {
		if l.confirmed {
			w.prevConsumer = l.name
			w.prevSlot = l.slot
			w.prevLost = time.Now()
		}
	}()
	l.planSlots(avoid)
	if err := l.flush(); err != nil {
		return err
	}

	tick := w.s.idleHB / 5
	if tick > time.Second {
		tick = time.Second
	}
	// Cross-checks run on a fixed schedule, late by at most a tick.
	if cc := w.s.crossCheck / 10; cc < tick {
		tick = cc
	}
	// The bridge polls at least this often.
	if tick > bridgePoll {
		tick = bridgePoll
	}
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	if err := l.onTick(now); err != nil {
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
			// A delivery, the common case, without onFrame's detour.
			if f := ev.f; f.kind == opMsg && l.deliverSID != 0 && f.msg.sid == l.deliverSID {
				onDelivery(l, f.msg, time.Now())
				if len(l.buf) > 0 {
					if err := l.flush(); err != nil {
						return err
					}
				}
				continue
			}
			if err := l.onFrame(ev.f); err != nil {
				return err
			}
		case t := <-ticker.C:
			if err := l.onTick(t); err != nil {
				return err
			}
		}
	}
}

// onTick runs the link's timers, in this order: PINGs, the consumer's state
// machine (consumer.go), the cross-check's schedule (crosscheck.go), the
// heartbeat (heartbeat.go) and the bridge (bridge.go); then it writes what
// they queued. Pruning the edge state is not the link's: pruneLoop.
func (l *link) onTick(now time.Time) error {
	w := l.w
	pingEvery := 4 * w.s.idleHB
	if now.Sub(l.lastPing) >= pingEvery {
		if l.pingsOut >= maxPingsOut {
			return errStale
		}
		l.pingsOut++
		l.lastPing = now
		l.buf = append(l.buf, "PING\r\n"...)
	}
	l.consumerTick(now)
	l.crossCheckTick(now)
	if now.Sub(l.lastBeat) >= HeartbeatInterval {
		l.publishHeartbeat(now)
	}
	l.bridgeTick(now)
	return l.flush()
}

// onFrame handles a frame from the server other than a delivery on the
// consumer's deliver subject (runLink hands those, the common case, to
// onDelivery itself): PINGs, PONGs, INFO, -ERR and replies to JetStream API
// requests. Messages on any other subscription are ignored.
func (l *link) onFrame(f frame) error {
	switch f.kind {
	case opPing:
		l.buf = append(l.buf, "PONG\r\n"...)
	case opPong:
		l.pingsOut = 0
	case opInfo:
		l.w.learn(f.info.ConnectURLs, l.c.server)
		if f.info.LameDuck {
			return errLameDuck
		}
		l.onPeersAnnounced(f.info.ConnectURLs, time.Now())
	case opErr:
		// A permissions violation leaves the connection up; anything else
		// is followed by the server closing it.
		if strings.Contains(strings.ToLower(f.err), "permissions violation") {
			l.onPermissionsViolation(f.err)
			break
		}
		return fmt.Errorf("server %s reported: %s", l.c.server.redact, f.err)
	case opMsg:
		if f.msg.sid == 1 {
			l.onReply(f.msg, time.Now())
		}
	}
	return l.flush()
}

// onReply handles a reply to a JetStream API request.
func (l *link) onReply(m *message, now time.Time) {
	if l.bridgeReq != "" && m.subject == l.bridgeReq {
		l.onDirectReply(m, now)
		return
	}
	r, ok := l.reqs[m.subject]
	if !ok {
		return // late, or unknown
	}
	delete(l.reqs, m.subject)
	switch r.kind {
	case reqCreate:
		if m.subject == l.createReq && l.phase == phaseCreating {
			l.onCreateReply(m, r, now)
		}
	case reqInfo:
		l.onStreamInfo(m, r, now)
	}
}

// onPermissionsViolation explains a refused operation. Without direct gets
// the bridge, without STREAM.INFO the cross-check, is off for the rest of
// the connection rather than retried (logged once per watcher).
func (l *link) onPermissionsViolation(msg string) {
	w := l.w
	if strings.Contains(msg, "$JS.API.DIRECT.GET.") {
		l.directDenied = true
		l.bridgeReq = ""
		if !w.directDeniedLogged {
			w.directDeniedLogged = true
			w.logf("server %s refused %s to edge %q: the direct-get bridge is off, so after a NATS node failure facts wait for a new consumer (seconds while the cluster elects a metadata leader); grant the edge natsedge.EdgePermissions(%q, %q)", l.c.server.redact, directSubject(w.s.stream), w.s.edge, w.s.bucket, w.s.edge)
		}
		return
	}
	if strings.Contains(msg, "$JS.API.STREAM.INFO.") {
		l.infoDenied = true
		if !w.infoDeniedLogged {
			w.infoDeniedLogged = true
			w.logf("server %s refused %s to edge %q: the consumer cross-check is off; grant the edge natsedge.EdgePermissions(%q, %q)", l.c.server.redact, streamInfoSubject(w.s.stream), w.s.edge, w.s.bucket, w.s.edge)
		}
		return
	}
	pub, sub := EdgePermissions(w.s.bucket, w.s.edge)
	w.logErr("", fmt.Errorf("server %s refused an operation of edge %q: %s; the edge's NATS user needs exactly natsedge.EdgePermissions(%q, %q): publish on %s; subscribe on %s",
		l.c.server.redact, w.s.edge, clip(msg, 200), w.s.bucket, w.s.edge, strings.Join(pub, ", "), strings.Join(sub, ", ")))
}

// flush writes and empties the link's output buffer.
func (l *link) flush() error {
	if len(l.buf) == 0 {
		return nil
	}
	err := l.c.write(l.buf)
	if cap(l.buf) > 64*1024 {
		l.buf = nil
	} else {
		l.buf = l.buf[:0]
	}
	if err != nil {
		return fmt.Errorf("write to %s: %w", l.c.server.redact, err)
	}
	return nil
}

// Kinds of JetStream API request; replies arrive on <inbox>.r.<n>.
const (
	reqCreate = iota + 1
	reqInfo
	reqDelete
)

// pendingReq is a JetStream API request waiting for its reply.
type pendingReq struct {
	kind      int
	sent      time.Time
	knownLast uint64 // for a create: the stream's last sequence known when it was sent
}

// maxPendingReqs bounds the requests waiting for a reply.
const maxPendingReqs = 16

// newReply returns a fresh reply subject for a JetStream API request:
// <inbox>.r.<n>, which the link's subscription 1 receives.
func (l *link) newReply() string {
	l.reqN++
	return l.inbox + ".r." + strconv.FormatUint(l.reqN, 10)
}

// request publishes a JetStream API request with a fresh reply subject and
// remembers it; it returns the reply subject.
func (l *link) request(kind int, subject string, body []byte, now time.Time) string {
	reply := l.newReply()
	l.buf = appendPub(l.buf, subject, reply, nil, body)
	if len(l.reqs) >= maxPendingReqs {
		// Unanswered cross-checks and deletes go; the create waits.
		for k := range l.reqs {
			if k != l.createReq {
				delete(l.reqs, k)
			}
		}
	}
	l.reqs[reply] = pendingReq{kind: kind, sent: now, knownLast: l.w.knownLast}
	return reply
}

// expireRequests forgets requests older than maxAge.
func (l *link) expireRequests(now time.Time, maxAge time.Duration) {
	for k, r := range l.reqs {
		if now.Sub(r.sent) > maxAge {
			delete(l.reqs, k)
		}
	}
}

// newInbox returns the edge's private inbox for one connection: its inbox
// prefix (which only its credential may subscribe to) and 128 random bits.
func newInbox(edge string) string {
	var b [16]byte
	rand.Read(b[:]) // never fails since Go 1.24
	return InboxPrefix(edge) + "." + hex.EncodeToString(b[:])
}

// event is one frame (or the read error that ended the connection).
type event struct {
	f   frame
	err error
}

// readLoop forwards frames to the link until the connection fails or the
// link ends. The channel is bounded: a slow link slows the reader, which
// slows the server (TCP back-pressure) rather than growing memory.
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
