package natsedge

import (
	"strconv"
	"time"
)

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
	// bridge runs (the link's tick is at most this).
	bridgePoll = 100 * time.Millisecond
	// bridgeTimeout is how long a direct get may go unanswered before it is
	// sent again.
	bridgeTimeout = 500 * time.Millisecond
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
func (l *link) bridgeState(now time.Time) (int, string) {
	w := l.w
	if l.phase != phaseActive {
		if w.bridgeOutage || now.Sub(l.noConsumerSince) >= bridgeDelay {
			return bridgeOn, "no consumer (creating one needs the JetStream metadata leader)"
		}
		return bridgeSoon, ""
	}
	if l.snapshot {
		return bridgeIdle, ""
	}
	if quiet := now.Sub(l.lastDeliver); quiet > w.s.idleHB+bridgeDelay {
		return bridgeOn, "consumer " + l.name + " silent for " + quiet.Round(time.Millisecond).String()
	}
	if !l.peerLostAt.IsZero() && !l.lastDeliver.After(l.peerLostAt) {
		return bridgeOn, "a cluster peer left and consumer " + l.name + " may have lived there"
	}
	return bridgeIdle, ""
}

// bridgeAllowed reports whether the bridge may ask now: never for a first
// sync (the consumer replays the bucket or the snapshot, the bridge would
// only repeat it), nor without the permission, nor while it holds off.
func (l *link) bridgeAllowed(now time.Time) bool {
	w := l.w
	return !l.directDenied && w.lastSeq > 0 && !l.snapshot && !now.Before(l.bridgeHold)
}

// bridgeTick starts, continues or stops the bridge.
func (l *link) bridgeTick(now time.Time) {
	w := l.w
	st, why := l.bridgeState(now)
	if st != bridgeOn {
		l.bridgeReq = ""
		if st == bridgeIdle && w.bridgeOutage {
			// A consumer delivers again: the outage is over.
			w.bridgeOutage = false
			l.bridgeTrouble = false
		}
		return
	}
	if !l.bridgeAllowed(now) {
		l.bridgeReq = ""
		return
	}
	if !w.bridgeOutage {
		w.bridgeOutage = true
		w.logf("%s on stream %s; following it with direct gets from sequence %d until a consumer delivers again", why, w.s.stream, w.lastSeq+1)
	}
	if l.bridgeReq != "" {
		if now.Sub(l.bridgeSent) < bridgeTimeout {
			return // answers on their way
		}
		l.bridgeReq = "" // unanswered (its peer died?): ask again
	}
	l.sendDirectGet(now)
}

// sendDirectGet asks for up to bridgeBatch entries of the bucket from
// lastSeq+1 on: {"seq":N,"next_by_subj":"$KV.<bucket>.>","batch":B,
// "max_bytes":M}. A server without batch support answers with the first
// entry only (no Nats-Num-Pending header), or 404 when there is none.
func (l *link) sendDirectGet(now time.Time) {
	w := l.w
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
	reply := l.newReply()
	l.buf = appendPub(l.buf, directSubject(w.s.stream), reply, nil, body)
	l.bridgeReq = reply
	l.bridgeSent = now
	l.bridgeFrom = from
	l.bridgeLast = 0
	w.mu.Lock()
	w.stats.DirectGets++
	w.mu.Unlock()
}

// bridgeMore asks for what follows at once, while the bridge is wanted.
func (l *link) bridgeMore(now time.Time) {
	l.bridgeReq = ""
	if st, _ := l.bridgeState(now); st == bridgeOn && l.bridgeAllowed(now) {
		l.sendDirectGet(now)
	}
}

// bridgePause stops asking for bridgeHoldOff.
func (l *link) bridgePause(now time.Time, why string) {
	w := l.w
	l.bridgeReq = ""
	l.bridgeHold = now.Add(bridgeHoldOff)
	if !l.bridgeTrouble {
		l.bridgeTrouble = true
		w.logf("direct get on stream %s: %s; asking again in %s", w.s.stream, why, bridgeHoldOff)
	}
}

// onDirectReply handles one answer to the outstanding direct get: an entry,
// the end of a batch (204), nothing at or after the sequence asked (404),
// or an error status.
func (l *link) onDirectReply(m *message, now time.Time) {
	w := l.w
	switch m.status {
	case 0:
	case 404:
		l.bridgeReq = "" // nothing new; the next tick asks again
		return
	case 204:
		// End of a batch: more right away if the server says so.
		if n, ok := parseUint(m.header("Nats-Num-Pending")); ok && n > 0 {
			l.bridgeMore(now)
			return
		}
		l.bridgeReq = ""
		return
	case 503:
		// No peer answering (yet): seen for a moment while a peer leaves.
		// The next tick asks again; a stream without allow_direct costs
		// ten requests a second, during outages only.
		l.bridgeReq = ""
		if !l.bridgeTrouble {
			l.bridgeTrouble = true
			w.logf("direct get on stream %s: no responders (a stream peer leaving, or allow_direct off); asking again", w.s.stream)
		}
		return
	default:
		l.bridgePause(now, "status "+strconv.Itoa(m.status)+" "+clip(m.description, 64))
		return
	}
	if m.oversized || m.badHeader {
		// Its sequence is unknown: the consumer will have to skip it.
		w.mu.Lock()
		w.stats.Malformed++
		w.mu.Unlock()
		l.bridgePause(now, "an entry the edge cannot read")
		return
	}
	seq, ok := parseUint(m.header("Nats-Sequence"))
	subject := m.header("Nats-Subject")
	if !ok || seq < l.bridgeFrom || seq <= l.bridgeLast || m.header("Nats-Stream") != w.s.stream {
		w.mu.Lock()
		w.stats.Malformed++
		w.mu.Unlock()
		l.bridgePause(now, "an answer out of order or for another stream")
		return
	}
	l.bridgeLast = seq
	batch := m.header("Nats-Num-Pending") != ""
	if seq > w.lastSeq {
		// Exactly what onDelivery does with a delivery.
		op := ""
		if len(m.headers) > 0 {
			op = m.header("KV-Operation")
		}
		applyEntry(w, subject, op, m.data, seq, now)
		w.mu.Lock()
		w.stats.DirectEntries++
		w.mu.Unlock()
	}
	if !batch {
		// A server without batches answered with one entry: ask for the next.
		l.bridgeMore(now)
	}
}

// onPeersAnnounced compares the cluster peers a server announced with the
// ones it announced before: a peer that left may have hosted the edge's
// consumer (R1), which makes the consumer suspect until it is heard from.
func (l *link) onPeersAnnounced(urls []string, now time.Time) {
	lost := false
	for i := 0; i < len(l.peers) && !lost; i++ {
		found := false
		for j := 0; j < len(urls); j++ {
			if urls[j] == l.peers[i] {
				found = true
				break
			}
		}
		if !found {
			lost = true
		}
	}
	l.peers = append([]string(nil), urls...)
	if lost {
		l.peerLostAt = now
		l.bridgeTick(now)
	}
}
