package natsedge

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/edgepass/edgepass/plugin/edgestate"
)

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

// session is the state of one connection.
type session struct {
	w       *Watcher
	c       *conn
	inbox   string
	nextSID uint64

	phase       int
	deliverSID  uint64
	name        string // the consumer requested or held
	slot        int
	confirmed   bool  // the server confirmed the consumer named name
	slotOrder   []int // slots to try for this create, in order
	slotIdx     int
	expectDseq  uint64
	createReq   string // reply subject of the outstanding create
	reqDeadline time.Time
	nextCreate  time.Time
	createFails int
	lastDeliver time.Time
	lastResync  time.Time
	delivered   uint64 // data messages from the current consumer
	// snapshot: the current consumer reads the snapshot.> subjects (the
	// first sync's snapshot phase), not the whole bucket.
	snapshot bool

	// Cross-check of the consumer against the stream (see onStreamInfo).
	nextCheck       time.Time
	behindSince     time.Time
	behindDelivered uint64
	resetSince      time.Time // the stream was seen below what was applied

	// consumerSeen is the highest stream sequence the current consumer
	// delivered (or the one before its start): its heartbeats cannot claim
	// less. The edge's lastSeq may be further on, applied by the bridge.
	consumerSeen uint64

	// The direct-get bridge (see bridgeState).
	noConsumerSince time.Time // when the session last had no active consumer
	peers           []string  // the cluster peers the server announced last
	peerLostAt      time.Time // when an announcement last lacked a peer
	bridgeReq       string    // reply subject of the outstanding direct get ("" none)
	bridgeSent      time.Time
	bridgeFrom      uint64 // the sequence it asked from
	bridgeLast      uint64 // the last sequence it answered with
	bridgeHold      time.Time
	bridgeTrouble   bool // a failed direct get was logged in this outage

	reqs      map[string]pendingReq
	pingsOut  int
	lastPing  time.Time
	lastBeat  time.Time
	lastPrune time.Time
	reqN      uint64
	buf       []byte
}

var errStale = errors.New("server stopped answering PINGs")

// newInbox returns the edge's private inbox for one connection: its inbox
// prefix (which only its credential may subscribe to) and 128 random bits.
func newInbox(edge string) string {
	var b [16]byte
	rand.Read(b[:]) // never fails since Go 1.24
	return InboxPrefix(edge) + "." + hex.EncodeToString(b[:])
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
	ss := &session{w: w, c: c, inbox: newInbox(w.s.edge), nextSID: 1, lastPing: now, lastBeat: now, lastPrune: now, reqs: map[string]pendingReq{}, slot: -1}
	// Replies to JetStream API requests arrive on <inbox>.r.<n>.
	ss.buf = appendSub(ss.buf[:0], ss.inbox+".r.*", 1)
	ss.nextSID = 2
	ss.phase = phaseWait
	ss.nextCreate = now
	ss.nextCheck = now.Add(w.s.crossCheck)
	ss.noConsumerSince = now
	ss.peers = append([]string(nil), c.info.ConnectURLs...)
	// A refused direct get is tried again on each connection (the
	// permission may have been granted meanwhile); logged once.
	w.directDenied = false
	// The consumer of a connection lost moments ago is still on the server
	// (until its inactive threshold): delete it so its slot is free again.
	avoid := -1
	if w.prevConsumer != "" && now.Sub(w.prevLost) < inactiveThreshold-5*time.Second {
		ss.request(reqDelete, "$JS.API.CONSUMER.DELETE."+w.s.stream+"."+w.prevConsumer, nil, now)
		avoid = w.prevSlot
	}
	w.prevConsumer = ""
	defer func() {
		if ss.confirmed {
			w.prevConsumer, w.prevSlot, w.prevLost = ss.name, ss.slot, time.Now()
		}
	}()
	ss.planSlots(avoid)
	if err := ss.flush(); err != nil {
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
			// A delivery, the common case, without onFrame's detour.
			if f := ev.f; f.kind == opMsg && ss.deliverSID != 0 && f.msg.sid == ss.deliverSID {
				onDelivery(ss, f.msg, time.Now())
				if len(ss.buf) > 0 {
					if err := ss.flush(); err != nil {
						return err
					}
				}
				continue
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

// request publishes a JetStream API request with a fresh reply subject and
// remembers it; it returns the reply subject.
func (ss *session) request(kind int, subject string, body []byte, now time.Time) string {
	ss.reqN++
	reply := ss.inbox + ".r." + strconv.FormatUint(ss.reqN, 10)
	ss.buf = appendPub(ss.buf, subject, reply, nil, body)
	if len(ss.reqs) >= maxPendingReqs {
		// Unanswered cross-checks and deletes go; the create waits.
		for k := range ss.reqs {
			if k != ss.createReq {
				delete(ss.reqs, k)
			}
		}
	}
	ss.reqs[reply] = pendingReq{kind: kind, sent: now, knownLast: ss.w.knownLast}
	return reply
}

// expireRequests forgets requests older than maxAge.
func (ss *session) expireRequests(now time.Time, maxAge time.Duration) {
	for k, r := range ss.reqs {
		if now.Sub(r.sent) > maxAge {
			delete(ss.reqs, k)
		}
	}
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
			w.logf("no heartbeat from consumer %s on stream %s for %s; recreating it from sequence %d", ss.name, w.s.stream, now.Sub(ss.lastDeliver).Round(time.Millisecond), w.lastSeq+1)
			ss.resync(now)
		}
	}
	if !now.Before(ss.nextCheck) {
		slot := ss.nextCheck
		ss.nextCheck = ss.nextCheck.Add(w.s.crossCheck)
		if ss.nextCheck.Before(now) {
			slot, ss.nextCheck = now, now.Add(w.s.crossCheck)
		}
		ss.expireRequests(now, requestTimeout)
		if ss.phase == phaseActive && !ss.snapshot && !w.infoDenied {
			// The check counts as made at its scheduled time: checks are
			// then exactly an interval apart, whatever the tick.
			ss.request(reqInfo, "$JS.API.STREAM.INFO."+w.s.stream, nil, slot)
		}
	}
	if now.Sub(ss.lastBeat) >= HeartbeatInterval {
		ss.publishHeartbeat(now)
	}
	// Prune every thirty idle heartbeats (30s by default): a walk of every
	// fact, interpreted under Yaegi.
	if now.Sub(ss.lastPrune) >= 30*w.s.idleHB {
		ss.lastPrune = now
		w.state.Prune(now)
	}
	ss.bridgeTick(now)
	return ss.flush()
}

func (ss *session) onFrame(f frame) error {
	switch f.kind {
	case opPing:
		ss.buf = append(ss.buf, "PONG\r\n"...)
	case opPong:
		ss.pingsOut = 0
	case opInfo:
		ss.w.learn(f.info.ConnectURLs, ss.c.server)
		if f.info.LameDuck {
			return errLameDuck
		}
		ss.onPeersAnnounced(f.info.ConnectURLs, time.Now())
	case opErr:
		// A permissions violation leaves the connection up; anything else
		// is followed by the server closing it.
		if strings.Contains(strings.ToLower(f.err), "permissions violation") {
			ss.onPermissionsViolation(f.err)
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
			onDelivery(ss, m, now)
		}
	}
	return ss.flush()
}

// onPermissionsViolation explains a refused operation. Without STREAM.INFO
// the cross-check is turned off (logged once) rather than retried.
func (ss *session) onPermissionsViolation(msg string) {
	w := ss.w
	if strings.Contains(msg, "$JS.API.DIRECT.GET.") {
		w.directDenied = true
		ss.bridgeReq = ""
		if !w.directDeniedLogged {
			w.directDeniedLogged = true
			w.logf("server %s refused %s to edge %q: the direct-get bridge is off, so after a NATS node failure facts wait for a new consumer (seconds while the cluster elects a metadata leader); grant the edge natsedge.EdgePermissions(%q, %q)", ss.c.server.redact, directSubject(w.s.stream), w.s.edge, w.s.bucket, w.s.edge)
		}
		return
	}
	if strings.Contains(msg, "$JS.API.STREAM.INFO.") {
		if !w.infoDenied {
			w.infoDenied = true
			w.logf("server %s refused $JS.API.STREAM.INFO.%s to edge %q: the consumer cross-check is off; grant the edge natsedge.EdgePermissions(%q, %q)", ss.c.server.redact, w.s.stream, w.s.edge, w.s.bucket, w.s.edge)
		}
		return
	}
	w.logErr("", fmt.Errorf("server %s refused an operation of edge %q: %s; the edge's NATS user needs exactly natsedge.EdgePermissions(%q, %q): publish on $JS.API.STREAM.INFO.%s, %s, $JS.API.CONSUMER.CREATE.%s.edge_%s_<0-7>, $JS.API.CONSUMER.DELETE.%s.edge_%s_<0-7>, $JS.FC.%s.edge_%s_<0-7>.* and %s; subscribe on %s.>",
		ss.c.server.redact, w.s.edge, clip(msg, 200), w.s.bucket, w.s.edge, w.s.stream, directSubject(w.s.stream), w.s.stream, w.s.edge, w.s.stream, w.s.edge, w.s.stream, w.s.edge, HeartbeatSubject(w.s.bucket, w.s.edge), InboxPrefix(w.s.edge)))
}

// consumerConfig is the JetStream consumer config the watcher asks for: an
// ordered push consumer (what nats.go's KV Watch uses), named so that the
// edge's permissions can be limited to its own consumers.
type consumerConfig struct {
	Name              string `json:"name"`
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
	// Action "create" fails (err_code 10148) rather than replace a consumer
	// that already has the name.
	Action string `json:"action"`
}

type apiError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

type sequenceInfo struct {
	Consumer uint64 `json:"consumer_seq"`
	Stream   uint64 `json:"stream_seq"`
}

type createResponse struct {
	Error      apiError     `json:"error"`
	Name       string       `json:"name"`
	NumPending uint64       `json:"num_pending"`
	Delivered  sequenceInfo `json:"delivered"`
}

type streamInfoResponse struct {
	Error apiError `json:"error"`
	State struct {
		FirstSeq uint64 `json:"first_seq"`
		LastSeq  uint64 `json:"last_seq"`
	} `json:"state"`
}

// JetStream API error codes.
const (
	jsErrStreamNotFound = 10059
	jsErrConsumerExists = 10148 // action create on a name in use with another config
)

// planSlots orders the consumer slots to try: random (replicas sharing a
// credential spread out), with avoid (the slot just given up) last.
func (ss *session) planSlots(avoid int) {
	order := make([]int, ConsumerSlots)
	for i := 0; i < ConsumerSlots; i++ {
		order[i] = i
	}
	for i := ConsumerSlots - 1; i > 0; i-- {
		j := ss.w.rnd.Intn(i + 1)
		order[i], order[j] = order[j], order[i]
	}
	if avoid >= 0 {
		for i := 0; i < ConsumerSlots-1; i++ {
			if order[i] == avoid {
				order[i], order[ConsumerSlots-1] = order[ConsumerSlots-1], order[i]
				break
			}
		}
	}
	ss.slotOrder = order
	ss.slotIdx = 0
}

// createConsumer subscribes a fresh deliver subject and asks the server for
// the consumer in the next planned slot, from the last applied sequence + 1
// (or everything).
func (ss *session) createConsumer(now time.Time) {
	w := ss.w
	if ss.slotIdx >= len(ss.slotOrder) {
		ss.planSlots(ss.slot)
	}
	ss.slot = ss.slotOrder[ss.slotIdx]
	ss.name = ConsumerName(w.s.edge, ss.slot)
	ss.confirmed = false
	ss.deliverSID = ss.nextSID
	ss.nextSID++
	deliver := ss.inbox + ".d." + strconv.FormatUint(ss.deliverSID, 10)
	ss.buf = appendSub(ss.buf, deliver, ss.deliverSID)
	// A first sync with trust anchors reads the signed snapshot first
	// (same consumer names, so the same permissions).
	ss.snapshot = w.lastSeq == 0 && !w.snapDone && w.s.anchors != nil
	filter := w.s.kvPrefix + ">"
	if ss.snapshot {
		filter = w.s.kvPrefix + edgestate.PrefixSnapshot + ">"
		if w.snap == nil {
			w.snap = w.state.NewSnapshotLoader()
		}
	}
	cc := consumerConfig{
		Name:              ss.name,
		Description:       "edgepass edge " + w.s.edge + " replica " + clip(w.s.replica, 64),
		DeliverSubject:    deliver,
		DeliverPolicy:     "last_per_subject",
		AckPolicy:         "none",
		FilterSubject:     filter,
		FlowControl:       true,
		IdleHeartbeat:     int64(w.s.idleHB),
		MemStorage:        true,
		InactiveThreshold: int64(inactiveThreshold),
		ReplayPolicy:      "instant",
		HeadersOnly:       false,
		Replicas:          1,
	}
	ss.consumerSeen = 0
	if w.lastSeq > 0 && !ss.snapshot {
		cc.DeliverPolicy = "by_start_sequence"
		cc.OptStartSeq = w.lastSeq + 1
		ss.consumerSeen = w.lastSeq
	}
	body, _ := json.Marshal(createRequest{Stream: w.s.stream, Config: cc, Action: "create"})
	ss.createReq = ss.request(reqCreate, "$JS.API.CONSUMER.CREATE."+w.s.stream+"."+ss.name, body, now)
	ss.phase = phaseCreating
	ss.reqDeadline = now.Add(requestTimeout)
	ss.expectDseq = 1
	ss.delivered = 0
	ss.behindSince = time.Time{}
}

// createFailed schedules another attempt with backoff, logging err unless nil.
func (ss *session) createFailed(now time.Time, err error) {
	w := ss.w
	if ss.snapshot {
		// No snapshot then: the next attempt replays the bucket.
		w.snapDone = true
		w.snap = nil
		ss.snapshot = false
	}
	ss.dropConsumer(now)
	ss.createFails++
	ss.phase = phaseWait
	ss.nextCreate = now.Add(w.backoff(ss.createFails, createBackoffCap))
	ss.createReq = ""
	ss.planSlots(-1)
	if err != nil {
		w.logErr("cannot watch bucket "+w.s.bucket+": ", err)
	}
}

// dropConsumer unsubscribes the current deliver subject and deletes the
// consumer on the server if it was ours (its inactive threshold would remove
// it anyway).
func (ss *session) dropConsumer(now time.Time) {
	w := ss.w
	if ss.phase == phaseActive {
		ss.noConsumerSince = now
	}
	if ss.deliverSID != 0 {
		ss.buf = appendUnsub(ss.buf, ss.deliverSID)
		ss.deliverSID = 0
	}
	if ss.confirmed {
		ss.request(reqDelete, "$JS.API.CONSUMER.DELETE."+w.s.stream+"."+ss.name, nil, now)
		ss.confirmed = false
	}
	w.count(func(st *Stats) { st.Consumer = "" })
}

// resync deletes the consumer and creates one in another slot from the last
// applied sequence + 1. The edge is not synced until that one caught up.
func (ss *session) resync(now time.Time) {
	ss.w.count(func(st *Stats) { st.Resyncs++ })
	ss.w.state.SetSynced(false)
	ss.dropConsumer(now)
	ss.phase = phaseWait
	ss.createReq = ""
	ss.planSlots(ss.slot)
	// A consumer that keeps failing the same way should not spin.
	rapid := now.Sub(ss.lastResync) < time.Second
	ss.lastResync = now
	if rapid {
		ss.nextCreate = now.Add(time.Second)
		return
	}
	ss.createConsumer(now)
}

// hijacked reports a consumer that is not (only) ours and recreates it.
func (ss *session) hijacked(now time.Time, why string) {
	w := ss.w
	w.count(func(st *Stats) { st.Hijacks++ })
	w.logf("consumer %s on stream %s: %s; it may have been deleted or replaced by another NATS client; recreating it from sequence %d", ss.name, w.s.stream, why, w.lastSeq+1)
	ss.resync(now)
	// Tell the daemon at once that this edge is not synced.
	ss.publishHeartbeat(now)
}

// onReply handles a reply to a JetStream API request.
func (ss *session) onReply(m *message, now time.Time) {
	if ss.bridgeReq != "" && m.subject == ss.bridgeReq {
		ss.onDirectReply(m, now)
		return
	}
	r, ok := ss.reqs[m.subject]
	if !ok {
		return // late, or unknown
	}
	delete(ss.reqs, m.subject)
	switch r.kind {
	case reqCreate:
		if m.subject == ss.createReq && ss.phase == phaseCreating {
			ss.onCreateReply(m, r, now)
		}
	case reqInfo:
		ss.onStreamInfo(m, r, now)
	}
}

func (ss *session) onCreateReply(m *message, req pendingReq, now time.Time) {
	w := ss.w
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
		switch r.Error.ErrCode {
		case jsErrStreamNotFound:
			if w.missingSince.IsZero() {
				w.logf("bucket %s does not exist yet (no stream %s); waiting for the edgepass daemon to create it", w.s.bucket, w.s.stream)
				w.missingSince = now
			}
			ss.createFailed(now, nil) // logged once above, not on every retry
			return
		case jsErrConsumerExists:
			// Another replica sharing the credential holds this slot (or
			// a consumer of ours lingers): try the next one.
			w.count(func(st *Stats) { st.SlotsTaken++ })
			if ss.deliverSID != 0 {
				ss.buf = appendUnsub(ss.buf, ss.deliverSID)
				ss.deliverSID = 0
			}
			ss.slotIdx++
			if ss.slotIdx < len(ss.slotOrder) {
				ss.createConsumer(now)
				return
			}
			ss.createFailed(now, fmt.Errorf("all %d consumer slots of edge %q on stream %s are taken: more than %d replicas share this credential, or consumers of replicas that went away linger (for up to %s); give each group of replicas its own edge name", ConsumerSlots, w.s.edge, w.s.stream, ConsumerSlots, inactiveThreshold))
			return
		}
		ss.createFailed(now, fmt.Errorf("server refused consumer %s: %s (code %d, err_code %d)", ss.name, clip(r.Error.Description, 200), r.Error.Code, r.Error.ErrCode))
		return
	}
	if r.Name != ss.name {
		ss.createFailed(now, fmt.Errorf("reply to the create request of consumer %s names consumer %q", ss.name, clip(r.Name, 64)))
		return
	}
	if !w.missingSince.IsZero() {
		w.logf("bucket %s is available; following it", w.s.bucket)
		w.missingSince = time.Time{}
	}
	ss.confirmed = true
	ss.phase = phaseActive
	ss.createFails = 0
	ss.lastDeliver = now
	ss.createReq = ""
	name := ss.name
	w.count(func(st *Stats) {
		st.ConsumersCreated++
		st.Consumer = name
	})
	w.state.Touch(now)
	// The consumer delivers from here on: the bridge stops (answers still
	// on their way are ignored).
	ss.bridgeTick(now)
	if ss.snapshot {
		if r.NumPending == 0 {
			ss.finishSnapshot(now) // no snapshot in the bucket
		}
		return
	}
	if r.NumPending == 0 {
		// Nothing after the consumer's start is waiting: every stream
		// sequence up to the last one known before the create, and up to
		// where the consumer starts, is accounted for (applied, expired or
		// superseded). The cross-check must not expect deliveries for them.
		if req.knownLast > w.floor {
			w.floor = req.knownLast
		}
		if r.Delivered.Stream > w.floor {
			w.floor = r.Delivered.Stream
		}
		if ss.expectDseq == 1 {
			ss.markSynced(now)
		}
	}
}

// onStreamInfo is the cross-check: the stream's last sequence against what
// the consumer delivered. A consumer that delivers nothing for a whole
// interval while the stream holds sequences beyond what was applied is not
// delivering to this edge (deleted, or replaced by a consumer someone else
// pointed at the edge's inbox): it is recreated.
func (ss *session) onStreamInfo(m *message, req pendingReq, now time.Time) {
	w := ss.w
	if m.status != 0 || m.badHeader || m.oversized {
		return
	}
	var r streamInfoResponse
	if err := json.Unmarshal(m.data, &r); err != nil || r.Error.Code != 0 || r.Error.ErrCode != 0 {
		return
	}
	last := r.State.LastSeq
	w.knownLast = last
	w.mu.Lock()
	w.stats.CrossChecks++
	w.mu.Unlock()
	if ss.phase != phaseActive || ss.snapshot {
		return
	}
	if last < w.lastSeq {
		// The stream restarted below what the edge applied (the bucket was
		// recreated): a consumer from lastSeq+1 would never deliver its
		// new facts. Seen for a whole interval, replay it from the start.
		if ss.resetSince.IsZero() {
			ss.resetSince = req.sent
			return
		}
		if req.sent.Sub(ss.resetSince) >= w.s.crossCheck {
			w.logf("stream %s is at sequence %d, below the %d this edge applied: the bucket was recreated; replaying it from the start", w.s.stream, last, w.lastSeq)
			w.lastSeq, w.floor, ss.resetSince = 0, 0, time.Time{}
			ss.resync(now)
		}
		return
	}
	ss.resetSince = time.Time{}
	accounted := w.lastSeq
	if w.floor > accounted {
		accounted = w.floor
	}
	if last <= accounted {
		ss.behindSince = time.Time{}
		return
	}
	if ss.behindSince.IsZero() || ss.delivered != ss.behindDelivered {
		// Behind, but the message may be in flight, or the consumer is
		// still catching up: look again next interval.
		ss.behindSince = req.sent
		ss.behindDelivered = ss.delivered
		return
	}
	if req.sent.Sub(ss.behindSince) < w.s.crossCheck {
		return
	}
	ss.hijacked(now, fmt.Sprintf("the stream is at sequence %d, the edge applied %d, and nothing arrived for %s", last, accounted, req.sent.Sub(ss.behindSince).Round(time.Millisecond)))
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
//
// It runs once per KV entry, interpreted, and a first sync without a
// snapshot is one entry per fact: it stays plain (no closures, which cost a
// frame each under yaegi; no helper calls where an inline statement does;
// a function rather than a method, which yaegi calls several times faster).
func onDelivery(ss *session, m *message, now time.Time) {
	w := ss.w
	if m.status != 0 {
		ss.onStatus(m, now)
		return
	}
	var a ackInfo
	if !parseAck(m.reply, &a) || a.stream != w.s.stream {
		w.mu.Lock()
		w.stats.Malformed++
		w.mu.Unlock()
		return
	}
	if a.consumer != ss.name {
		// Attack: another consumer pointed at this edge's inbox.
		ss.hijacked(now, fmt.Sprintf("a message from consumer %q arrived on its deliver subject", clip(a.consumer, 64)))
		return
	}
	ss.lastDeliver = now
	if a.consumerSeq != ss.expectDseq {
		w.count(func(st *Stats) { st.Gaps++ })
		w.logf("consumer sequence gap on %s (got %d, want %d); recreating the consumer from sequence %d", ss.name, a.consumerSeq, ss.expectDseq, w.lastSeq+1)
		ss.resync(now)
		return
	}
	ss.expectDseq++
	ss.delivered++
	w.mu.Lock()
	w.stats.Delivered++
	w.mu.Unlock()
	if ss.snapshot {
		ss.onSnapshotEntry(m, &a, now)
		if a.pending == 0 {
			ss.finishSnapshot(now)
		}
		return
	}
	if a.streamSeq > ss.consumerSeen {
		ss.consumerSeen = a.streamSeq
	}
	prefix := w.s.kvPrefix
	switch {
	case a.streamSeq <= w.lastSeq:
		// Already applied: by the direct-get bridge while this consumer
		// was being created (it starts where the edge stood then).
	case m.oversized:
		w.lastSeq = a.streamSeq
		w.mu.Lock()
		w.stats.Oversized++
		w.mu.Unlock()
		w.state.Touch(now)
	case m.badHeader || len(m.subject) <= len(prefix) || m.subject[:len(prefix)] != prefix:
		w.lastSeq = a.streamSeq
		w.mu.Lock()
		w.stats.Malformed++
		w.mu.Unlock()
		w.state.Touch(now)
	default:
		w.lastSeq = a.streamSeq
		op := ""
		if len(m.headers) > 0 {
			op = m.header("KV-Operation")
		}
		key := m.subject[len(prefix):]
		// Apply counts and reports refused entries; they are never fatal.
		if err := w.state.Apply(key, op, m.data, a.streamSeq, now); err != nil {
			w.logRejected(key, a.streamSeq, err, now)
		}
	}
	if a.pending == 0 {
		ss.markSynced(now)
	}
}

// onSnapshotEntry hands an entry of the snapshot consumer to the loader: a
// verified chunk's facts are applied at once; which sequence the edge
// resumes after is decided when the consumer caught up (finishSnapshot).
func (ss *session) onSnapshotEntry(m *message, a *ackInfo, now time.Time) {
	w := ss.w
	w.state.Touch(now)
	prefix := w.s.kvPrefix
	if m.oversized || m.badHeader || !strings.HasPrefix(m.subject, prefix) || w.snap == nil {
		w.mu.Lock()
		w.stats.SnapshotRefused++
		w.mu.Unlock()
		return
	}
	key := m.subject[len(prefix):]
	var stored time.Time
	if a.timestamp > 0 {
		stored = time.Unix(0, a.timestamp)
	}
	if err := w.snap.Add(key, m.header("KV-Operation"), m.data, a.streamSeq, stored); err != nil {
		w.mu.Lock()
		w.stats.SnapshotRefused++
		w.mu.Unlock()
		w.logRejected(key, a.streamSeq, err, now)
		return
	}
	chunks := uint64(w.snap.Chunks)
	w.mu.Lock()
	w.stats.SnapshotChunks = chunks
	w.mu.Unlock()
}

// finishSnapshot ends the snapshot phase once its consumer caught up: the
// newest complete generation, if any, is where the edge resumes (its
// sequence + 1); without one the whole bucket is replayed. Either way the
// edge is synced only once the bucket's own consumer caught up.
func (ss *session) finishSnapshot(now time.Time) {
	w := ss.w
	l := w.snap
	w.snap = nil // (one assignment each: yaegi fails a nil in a tuple assignment)
	w.snapDone = true
	if l != nil {
		gen, seq, ok := l.Best()
		if ok {
			l.Adopt(seq, now)
			w.lastSeq = seq
			w.mu.Lock()
			w.stats.SnapshotSeq = seq
			w.mu.Unlock()
			w.logf("loaded snapshot %s of bucket %s: %d facts in %d chunks, consistent with sequence %d; following the bucket from %d", clip(gen, 64), w.s.bucket, l.Facts, l.Chunks, seq, seq+1)
		} else if l.Seen() > 0 {
			w.logf("no complete snapshot in bucket %s (%d generations seen, %d chunks applied); replaying the whole bucket", w.s.bucket, l.Seen(), l.Chunks)
		}
	}
	ss.dropConsumer(now)
	ss.snapshot = false
	ss.planSlots(ss.slot)
	ss.createConsumer(now)
}

// fcConsumer returns the stream and consumer a flow-control subject belongs
// to: "$JS.FC.<stream>.<consumer>.<id>" or, in the newer form,
// "$JS.FC.<domain>.<account hash>.<stream>.<consumer>.<id>".
func fcConsumer(subject string) (string, string, bool) {
	if !strings.HasPrefix(subject, "$JS.FC.") || len(subject) > maxSubjectLen || strings.ContainsAny(subject, " \t\r\n*>") {
		return "", "", false
	}
	t := strings.Split(subject, ".")
	switch len(t) {
	case 5:
		return t[2], t[3], true
	case 7:
		return t[4], t[5], true
	}
	return "", "", false
}

// ownFC reports whether subject is a flow-control subject of this edge's
// current consumer.
func (ss *session) ownFC(subject string) bool {
	stream, consumer, ok := fcConsumer(subject)
	return ok && stream == ss.w.s.stream && consumer == ss.name
}

// onStatus handles heartbeats, flow control and errors on the deliver subject.
func (ss *session) onStatus(m *message, now time.Time) {
	w := ss.w
	if m.status != 100 {
		w.logf("consumer %s on stream %s reported %d %s; recreating it", ss.name, w.s.stream, m.status, clip(m.description, 64))
		ss.resync(now)
		return
	}
	if strings.HasPrefix(m.description, "FlowControl") {
		if m.reply == "" {
			return
		}
		if !ss.ownFC(m.reply) {
			ss.hijacked(now, fmt.Sprintf("a flow-control request of another consumer arrived on its deliver subject (%s)", clip(m.reply, 128)))
			return
		}
		ss.lastDeliver = now
		w.state.Touch(now)
		ss.buf = appendPub(ss.buf, m.reply, "", nil, nil)
		w.count(func(st *Stats) { st.FlowControls++ })
		return
	}
	// Idle heartbeat. It must come from this edge's consumer: its counts
	// can only be at or beyond what the edge received from it.
	if last := m.header("Nats-Last-Stream"); last != "" {
		if n, ok := parseUint(last); ok && n < ss.consumerSeen {
			ss.hijacked(now, fmt.Sprintf("a heartbeat says stream sequence %d, below the %d its consumer delivered: it comes from another consumer", n, ss.consumerSeen))
			return
		}
	}
	if last := m.header("Nats-Last-Consumer"); last != "" {
		n, ok := parseUint(last)
		if ok && n+1 < ss.expectDseq {
			ss.hijacked(now, fmt.Sprintf("a heartbeat says %d messages delivered, but the edge received %d: it comes from another consumer", n, ss.expectDseq-1))
			return
		}
		if ok && n >= ss.expectDseq {
			w.count(func(st *Stats) { st.Gaps++ })
			w.logf("heartbeat shows missed messages on %s (server delivered %d, got %d); recreating the consumer from sequence %d", ss.name, n, ss.expectDseq-1, w.lastSeq+1)
			ss.resync(now)
			return
		}
	}
	ss.lastDeliver = now
	w.state.Touch(now)
	// A stalled consumer names the flow-control reply it is waiting for.
	if fc := m.header("Nats-Consumer-Stalled"); fc != "" && ss.ownFC(fc) {
		ss.buf = appendPub(ss.buf, fc, "", nil, nil)
		w.count(func(st *Stats) { st.FlowControls++ })
	}
	if ss.phase == phaseActive && ss.snapshot {
		// Idle: the snapshot consumer has delivered everything (unless it
		// is stalled on flow control).
		if m.header("Nats-Consumer-Stalled") == "" {
			ss.finishSnapshot(now)
		}
		return
	}
	if ss.phase == phaseActive && ss.behindSince.IsZero() {
		// The server only sends idle heartbeats once nothing is pending;
		// not while the cross-check saw the stream beyond the edge.
		ss.markSynced(now)
	}
}

// Heartbeat is what each edge replica reports every HeartbeatInterval on
// HeartbeatSubject(bucket, edge), so the daemon can show every replica's sync
// state. The daemon takes the edge name from the subject, not from Edge.
type Heartbeat struct {
	Edge            string `json:"edge"`
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

func (ss *session) publishHeartbeat(now time.Time) {
	w := ss.w
	ss.lastBeat = now
	st := w.state.Stats()
	ws := w.Stats()
	hb := Heartbeat{
		Edge:            w.s.edge,
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
	ss.buf = appendPub(ss.buf, HeartbeatSubject(w.s.bucket, w.s.edge), "", nil, body)
	w.count(func(st *Stats) { st.Heartbeats++ })
}

// The direct-get bridge keeps an edge following the stream while it has no
// consumer that delivers.
//
// Creating a consumer needs the JetStream metadata leader; after a NATS node
// dies the cluster elects a new one for seconds (4–9 s measured on three
// nodes), while the stream's own leader (another RAFT group) may already
// acknowledge revocations. Direct gets ($JS.API.DIRECT.GET.KV_<bucket>,
// allow_direct, on by default for KV buckets) are answered by any current
// peer of the stream without either leader. So while the edge has no working
// consumer it asks for the stream's entries from lastSeq+1 on, in batches,
// and applies them exactly as deliveries (edgestate.Apply, same lastSeq
// bookkeeping). A consumer created later starts at or before lastSeq+1 and
// its deliveries of what the bridge applied are skipped as already applied:
// nothing is applied twice, nothing out of order.
//
// The bridge runs while
//   - there is no active consumer for bridgeDelay (a create pending or
//     failing, a resync, a new connection), or from the first tick when an
//     outage that started on an earlier connection goes on;
//   - the active consumer is suspect: silent for an idle heartbeat plus
//     bridgeDelay, or not heard from since the server announced that a
//     cluster peer left (its R1 consumer may have lived there).
//
// It never marks the edge synced (only a consumer that caught up does), and
// it stops at once when a consumer delivers again.

const (
	// bridgeDelay is how long an edge waits without an active consumer
	// before it follows the stream with direct gets.
	bridgeDelay = 300 * time.Millisecond
	// bridgePoll is the longest interval between two direct gets while the
	// bridge runs (the session's tick is at most this).
	bridgePoll = 200 * time.Millisecond
	// bridgeTimeout is how long a direct get may go unanswered before it is
	// sent again.
	bridgeTimeout = time.Second
	// bridgeBatch is how many entries one direct get asks for.
	bridgeBatch = 64
	// bridgeMaxBytes bounds the entries one direct get returns.
	bridgeMaxBytes = 256 * 1024
	// bridgeHoldOff is how long the bridge pauses after an answer it cannot
	// use (no responders, an error status, an entry it cannot read).
	bridgeHoldOff = time.Second
)

// directSubject is the direct get subject of the edge bucket's stream.
func directSubject(stream string) string {
	return "$JS.API.DIRECT.GET." + stream
}

// What the consumer looks like to the bridge (plain ints for yaegi).
const (
	bridgeIdle = iota // a consumer delivers: no bridge
	bridgeSoon        // no consumer, for less than bridgeDelay
	bridgeOn          // no consumer that delivers: bridge
)

// bridgeState says whether the edge should follow the stream with direct
// gets now, and why (for the log).
func (ss *session) bridgeState(now time.Time) (int, string) {
	w := ss.w
	if ss.phase != phaseActive {
		if w.bridgeOutage || now.Sub(ss.noConsumerSince) >= bridgeDelay {
			return bridgeOn, "no consumer (creating one needs the JetStream metadata leader)"
		}
		return bridgeSoon, ""
	}
	if ss.snapshot {
		return bridgeIdle, ""
	}
	if quiet := now.Sub(ss.lastDeliver); quiet > w.s.idleHB+bridgeDelay {
		return bridgeOn, "consumer " + ss.name + " silent for " + quiet.Round(time.Millisecond).String()
	}
	if !ss.peerLostAt.IsZero() && !ss.lastDeliver.After(ss.peerLostAt) {
		return bridgeOn, "a cluster peer left and consumer " + ss.name + " may have lived there"
	}
	return bridgeIdle, ""
}

// bridgeAllowed reports whether the bridge may ask now: never for a first
// sync (the consumer replays the bucket or the snapshot, the bridge would
// only repeat it), nor without the permission, nor while it holds off.
func (ss *session) bridgeAllowed(now time.Time) bool {
	w := ss.w
	return !w.directDenied && w.lastSeq > 0 && !ss.snapshot && !now.Before(ss.bridgeHold)
}

// bridgeTick starts, continues or stops the bridge.
func (ss *session) bridgeTick(now time.Time) {
	w := ss.w
	st, why := ss.bridgeState(now)
	if st != bridgeOn {
		ss.bridgeReq = ""
		if st == bridgeIdle && w.bridgeOutage {
			// A consumer delivers again: the outage is over.
			w.bridgeOutage = false
			ss.bridgeTrouble = false
		}
		return
	}
	if !ss.bridgeAllowed(now) {
		ss.bridgeReq = ""
		return
	}
	if !w.bridgeOutage {
		w.bridgeOutage = true
		w.logf("%s on stream %s; following it with direct gets from sequence %d until a consumer delivers again", why, w.s.stream, w.lastSeq+1)
	}
	if ss.bridgeReq != "" {
		if now.Sub(ss.bridgeSent) < bridgeTimeout {
			return // answers on their way
		}
		ss.bridgeReq = "" // unanswered (its peer died?): ask again
	}
	ss.sendDirectGet(now)
}

// sendDirectGet asks for up to bridgeBatch entries of the bucket from
// lastSeq+1 on: {"seq":N,"next_by_subj":"$KV.<bucket>.>","batch":B,
// "max_bytes":M}. A server without batch support answers with the first
// entry only (no Nats-Num-Pending header), or 404 when there is none.
func (ss *session) sendDirectGet(now time.Time) {
	w := ss.w
	from := w.lastSeq + 1
	body := make([]byte, 0, 128)
	body = append(body, `{"seq":`...)
	body = strconv.AppendUint(body, from, 10)
	body = append(body, `,"next_by_subj":"`...)
	body = append(body, w.s.kvPrefix...)
	body = append(body, `>","batch":`...)
	body = strconv.AppendInt(body, bridgeBatch, 10)
	body = append(body, `,"max_bytes":`...)
	body = strconv.AppendInt(body, bridgeMaxBytes, 10)
	body = append(body, '}')
	ss.reqN++
	reply := ss.inbox + ".r." + strconv.FormatUint(ss.reqN, 10)
	ss.buf = appendPub(ss.buf, directSubject(w.s.stream), reply, nil, body)
	ss.bridgeReq = reply
	ss.bridgeSent = now
	ss.bridgeFrom = from
	ss.bridgeLast = 0
	w.mu.Lock()
	w.stats.DirectGets++
	w.mu.Unlock()
}

// bridgeMore asks for what follows at once, while the bridge is wanted.
func (ss *session) bridgeMore(now time.Time) {
	ss.bridgeReq = ""
	if st, _ := ss.bridgeState(now); st == bridgeOn && ss.bridgeAllowed(now) {
		ss.sendDirectGet(now)
	}
}

// bridgePause stops asking for bridgeHoldOff.
func (ss *session) bridgePause(now time.Time, why string) {
	w := ss.w
	ss.bridgeReq = ""
	ss.bridgeHold = now.Add(bridgeHoldOff)
	if !ss.bridgeTrouble {
		ss.bridgeTrouble = true
		w.logf("direct get on stream %s: %s; asking again in %s", w.s.stream, why, bridgeHoldOff)
	}
}

// onDirectReply handles one answer to the outstanding direct get: an entry,
// the end of a batch (204), nothing at or after the sequence asked (404),
// or an error status.
func (ss *session) onDirectReply(m *message, now time.Time) {
	w := ss.w
	switch m.status {
	case 0:
	case 404:
		ss.bridgeReq = "" // nothing new; the next tick asks again
		return
	case 204:
		// End of a batch: more right away if the server says so.
		if n, ok := parseUint(m.header("Nats-Num-Pending")); ok && n > 0 {
			ss.bridgeMore(now)
			return
		}
		ss.bridgeReq = ""
		return
	case 503:
		ss.bridgePause(now, "no responders (the stream has no peer answering direct gets, or allow_direct is off)")
		return
	default:
		ss.bridgePause(now, "status "+strconv.Itoa(m.status)+" "+clip(m.description, 64))
		return
	}
	if m.oversized || m.badHeader {
		// Its sequence is unknown: the consumer will have to skip it.
		w.mu.Lock()
		w.stats.Malformed++
		w.mu.Unlock()
		ss.bridgePause(now, "an entry the edge cannot read")
		return
	}
	seq, ok := parseUint(m.header("Nats-Sequence"))
	subject := m.header("Nats-Subject")
	if !ok || seq < ss.bridgeFrom || seq <= ss.bridgeLast || m.header("Nats-Stream") != w.s.stream {
		w.mu.Lock()
		w.stats.Malformed++
		w.mu.Unlock()
		ss.bridgePause(now, "an answer out of order or for another stream")
		return
	}
	ss.bridgeLast = seq
	batch := m.header("Nats-Num-Pending") != ""
	if seq > w.lastSeq {
		// Exactly what onDelivery does with a delivery.
		prefix := w.s.kvPrefix
		w.lastSeq = seq
		if len(subject) <= len(prefix) || subject[:len(prefix)] != prefix {
			w.mu.Lock()
			w.stats.Malformed++
			w.mu.Unlock()
			w.state.Touch(now)
		} else {
			key := subject[len(prefix):]
			if err := w.state.Apply(key, m.header("KV-Operation"), m.data, seq, now); err != nil {
				w.logRejected(key, seq, err, now)
			}
		}
		w.mu.Lock()
		w.stats.DirectEntries++
		w.mu.Unlock()
	}
	if !batch {
		// A server without batches answered with one entry: ask for the next.
		ss.bridgeMore(now)
	}
}

// onPeersAnnounced compares the cluster peers a server announced with the
// ones it announced before: a peer that left may have hosted the edge's
// consumer (R1), which makes the consumer suspect until it is heard from.
func (ss *session) onPeersAnnounced(urls []string, now time.Time) {
	lost := false
	for i := 0; i < len(ss.peers) && !lost; i++ {
		found := false
		for j := 0; j < len(urls); j++ {
			if urls[j] == ss.peers[i] {
				found = true
				break
			}
		}
		if !found {
			lost = true
		}
	}
	ss.peers = append([]string(nil), urls...)
	if lost {
		ss.peerLostAt = now
		ss.bridgeTick(now)
	}
}
