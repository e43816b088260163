package natsedge

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/edgepass/edgepass/plugin/edgestate"
)

// The edge's JetStream consumer: one named push consumer at a time, in one
// of the edge's ConsumerSlots, created on each link from the last applied
// sequence + 1 (everything on a first sync) and recreated in another slot
// (resync) after a gap, a stall, a hijack or an error. A link moves it
// through three phases:
//
//	            createConsumer                onCreateReply
//	phaseWait -----------------> phaseCreating ---------------> phaseActive
//	  ^  ^                            |                              |
//	  |  +------ createFailed --------+                              |
//	  |    (no reply, refused; backoff)                              |
//	  +------------ resync (gap, stall, hijack, error) --------------+
//
// resync creates the next consumer at once (phaseCreating) unless the one
// before was less than a second ago; a slot in use (err_code 10148) moves
// on to the next slot at once; finishSnapshot replaces the first sync's
// snapshot consumer with the bucket's.
//
// What the consumer delivers is handled in delivery.go, the first sync's
// snapshot consumer in snapshot.go, the check that it still delivers to
// this edge in crosscheck.go.

// Consumer phases within a link.
const (
	phaseWait     = iota // waiting until nextCreate to create a consumer
	phaseCreating        // request sent, waiting for the reply
	phaseActive          // consumer confirmed and delivering
)

// consumerTick moves the consumer's state machine on: creates a consumer
// when it is time, gives up a create that got no reply, and recreates a
// consumer silent for three idle heartbeats.
func (l *link) consumerTick(now time.Time) {
	w := l.w
	switch l.phase {
	case phaseWait:
		if !now.Before(l.nextCreate) {
			l.createConsumer(now)
		}
	case phaseCreating:
		if now.After(l.reqDeadline) {
			l.createFailed(now, fmt.Errorf("no reply to the consumer create request within %s", requestTimeout))
		}
	case phaseActive:
		if now.Sub(l.lastDeliver) > 3*w.s.idleHB {
			w.count(func(st *Stats) { st.Stalls++ })
			w.logf("no heartbeat from consumer %s on stream %s for %s; recreating it from sequence %d", l.name, w.s.stream, now.Sub(l.lastDeliver).Round(time.Millisecond), w.lastSeq+1)
			l.resync(now)
		}
	}
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

// JetStream API error codes.
const (
	jsErrStreamNotFound = 10059
	jsErrConsumerExists = 10148 // action create on a name in use with another config
)

// planSlots orders the consumer slots to try: random (replicas sharing a
// credential spread out), with avoid (the slot just given up) last.
func (l *link) planSlots(avoid int) {
	order := make([]int, ConsumerSlots)
	for i := 0; i < ConsumerSlots; i++ {
		order[i] = i
	}
	for i := ConsumerSlots - 1; i > 0; i-- {
		j := l.w.rnd.Intn(i + 1)
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
	l.slotOrder = order
	l.slotIdx = 0
}

// createConsumer subscribes a fresh deliver subject and asks the server for
// the consumer in the next planned slot, from the last applied sequence + 1
// (or everything).
func (l *link) createConsumer(now time.Time) {
	w := l.w
	if l.slotIdx >= len(l.slotOrder) {
		l.planSlots(l.slot)
	}
	l.slot = l.slotOrder[l.slotIdx]
	l.name = ConsumerName(w.s.edge, l.slot)
	l.confirmed = false
	l.deliverSID = l.nextSID
	l.nextSID++
	deliver := l.inbox + ".d." + strconv.FormatUint(l.deliverSID, 10)
	l.buf = appendSub(l.buf, deliver, l.deliverSID)
	// A first sync with trust anchors reads the signed snapshot first
	// (same consumer names, so the same permissions).
	l.snapshot = w.lastSeq == 0 && !w.snapDone && w.s.anchors != nil
	filter := w.s.kvPrefix + ">"
	if l.snapshot {
		filter = w.s.kvPrefix + edgestate.PrefixSnapshot + ">"
		if w.snap == nil {
			w.snap = w.state.NewSnapshotLoader()
		}
	}
	cc := consumerConfig{
		Name:              l.name,
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
	l.consumerSeen = 0
	if w.lastSeq > 0 && !l.snapshot {
		cc.DeliverPolicy = "by_start_sequence"
		cc.OptStartSeq = w.lastSeq + 1
		l.consumerSeen = w.lastSeq
	}
	body, _ := json.Marshal(createRequest{Stream: w.s.stream, Config: cc, Action: "create"})
	l.createReq = l.request(reqCreate, consumerCreateSubject(w.s.stream, l.name), body, now)
	l.phase = phaseCreating
	l.reqDeadline = now.Add(requestTimeout)
	l.expectDseq = 1
	l.behindSince = time.Time{}
}

// createFailed schedules another attempt with backoff, logging err unless nil.
func (l *link) createFailed(now time.Time, err error) {
	w := l.w
	if l.snapshot {
		// No snapshot then: the next attempt replays the bucket.
		w.snapDone = true
		w.snap = nil
		l.snapshot = false
	}
	l.dropConsumer(now)
	l.createFails++
	l.phase = phaseWait
	l.nextCreate = now.Add(w.backoff(l.createFails, createBackoffCap))
	l.createReq = ""
	l.planSlots(-1)
	if err != nil {
		w.logErr("cannot watch bucket "+w.s.bucket+": ", err)
	}
}

// dropConsumer unsubscribes the current deliver subject and deletes the
// consumer on the server if it was ours (its inactive threshold would remove
// it anyway).
func (l *link) dropConsumer(now time.Time) {
	w := l.w
	if l.phase == phaseActive {
		l.noConsumerSince = now
	}
	if l.deliverSID != 0 {
		l.buf = appendUnsub(l.buf, l.deliverSID)
		l.deliverSID = 0
	}
	if l.confirmed {
		l.request(reqDelete, consumerDeleteSubject(w.s.stream, l.name), nil, now)
		l.confirmed = false
	}
	w.count(func(st *Stats) { st.Consumer = "" })
}

// resync deletes the consumer and creates one in another slot from the last
// applied sequence + 1. The edge is not synced until that one caught up.
func (l *link) resync(now time.Time) {
	l.w.count(func(st *Stats) { st.Resyncs++ })
	l.w.state.SetSynced(false)
	l.dropConsumer(now)
	l.phase = phaseWait
	l.createReq = ""
	l.planSlots(l.slot)
	// A consumer that keeps failing the same way should not spin.
	rapid := now.Sub(l.lastResync) < time.Second
	l.lastResync = now
	if rapid {
		l.nextCreate = now.Add(time.Second)
		return
	}
	l.createConsumer(now)
}

// hijacked reports a consumer that is not (only) ours and recreates it.
func (l *link) hijacked(now time.Time, why string) {
	w := l.w
	w.count(func(st *Stats) { st.Hijacks++ })
	w.logf("consumer %s on stream %s: %s; it may have been deleted or replaced by another NATS client; recreating it from sequence %d", l.name, w.s.stream, why, w.lastSeq+1)
	l.resync(now)
	// Tell the daemon at once that this edge is not synced.
	l.publishHeartbeat(now)
}

func (l *link) onCreateReply(m *message, req pendingReq, now time.Time) {
	w := l.w
	if m.status == 503 {
		l.createFailed(now, errors.New("no JetStream responders (is JetStream enabled on the server and the account?)"))
		return
	}
	if m.status != 0 || m.badHeader || m.oversized {
		l.createFailed(now, fmt.Errorf("unexpected reply to the consumer create request (status %d %s)", m.status, clip(m.description, 64)))
		return
	}
	var r createResponse
	if err := json.Unmarshal(m.data, &r); err != nil {
		l.createFailed(now, fmt.Errorf("bad reply to the consumer create request: %v", err))
		return
	}
	if r.Error.Code != 0 || r.Error.ErrCode != 0 {
		switch r.Error.ErrCode {
		case jsErrStreamNotFound:
			if !w.missingLogged {
				w.logf("bucket %s does not exist yet (no stream %s); waiting for the edgepass daemon to create it", w.s.bucket, w.s.stream)
				w.missingLogged = true
			}
			l.createFailed(now, nil) // logged once above, not on every retry
			return
		case jsErrConsumerExists:
			// Another replica sharing the credential holds this slot (or
			// a consumer of ours lingers): try the next one.
			w.count(func(st *Stats) { st.SlotsTaken++ })
			if l.deliverSID != 0 {
				l.buf = appendUnsub(l.buf, l.deliverSID)
				l.deliverSID = 0
			}
			l.slotIdx++
			if l.slotIdx < len(l.slotOrder) {
				l.createConsumer(now)
				return
			}
			l.createFailed(now, fmt.Errorf("all %d consumer slots of edge %q on stream %s are taken: more than %d replicas share this credential, or consumers of replicas that went away linger (for up to %s); give each group of replicas its own edge name", ConsumerSlots, w.s.edge, w.s.stream, ConsumerSlots, inactiveThreshold))
			return
		}
		l.createFailed(now, fmt.Errorf("server refused consumer %s: %s (code %d, err_code %d)", l.name, clip(r.Error.Description, 200), r.Error.Code, r.Error.ErrCode))
		return
	}
	if r.Name != l.name {
		l.createFailed(now, fmt.Errorf("reply to the create request of consumer %s names consumer %q", l.name, clip(r.Name, 64)))
		return
	}
	if w.missingLogged {
		w.logf("bucket %s is available; following it", w.s.bucket)
		w.missingLogged = false
	}
	l.confirmed = true
	l.phase = phaseActive
	l.createFails = 0
	l.lastDeliver = now
	l.createReq = ""
	name := l.name
	w.count(func(st *Stats) {
		st.ConsumersCreated++
		st.Consumer = name
	})
	w.state.Touch(now)
	// The consumer delivers from here on: the bridge stops (answers still
	// on their way are ignored).
	l.bridgeTick(now)
	if l.snapshot {
		if r.NumPending == 0 {
			l.finishSnapshot(now) // no snapshot in the bucket
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
		if l.expectDseq == 1 {
			l.markSynced(now)
		}
	}
}

// markSynced records that the edge has caught up and reports it once.
func (l *link) markSynced(now time.Time) {
	if l.w.state.Synced() {
		return
	}
	l.w.state.SetSynced(true)
	l.publishHeartbeat(now)
}
