package natsedge

import (
	"fmt"
	"strings"
	"time"
)

// What arrives on the consumer's deliver subject: KV entries (onDelivery),
// and the server's idle heartbeats, flow-control requests and errors
// (onStatus). Anything there that the edge's own consumer cannot have sent
// is a hijack, and the consumer is recreated.

// onDelivery handles a message on the consumer's deliver subject.
//
// It runs once per KV entry, interpreted, and a first sync without a
// snapshot is one entry per fact: it stays plain (no closures, which cost a
// frame each under yaegi; no helper calls where an inline statement does;
// a function rather than a method, which yaegi calls several times faster).
func onDelivery(l *link, m *message, now time.Time) {
	w := l.w
	if m.status != 0 {
		l.onStatus(m, now)
		return
	}
	var a ackInfo
	if !parseAck(m.reply, &a) || a.stream != w.s.stream {
		w.mu.Lock()
		w.stats.Malformed++
		w.mu.Unlock()
		return
	}
	if a.consumer != l.name {
		// Attack: another consumer pointed at this edge's inbox.
		l.hijacked(now, fmt.Sprintf("a message from consumer %q arrived on its deliver subject", clip(a.consumer, 64)))
		return
	}
	l.lastDeliver = now
	if a.consumerSeq != l.expectDseq {
		w.count(func(st *Stats) { st.Gaps++ })
		w.logf("consumer sequence gap on %s (got %d, want %d); recreating the consumer from sequence %d", l.name, a.consumerSeq, l.expectDseq, w.lastSeq+1)
		l.resync(now)
		return
	}
	l.expectDseq++
	w.mu.Lock()
	w.stats.Delivered++
	w.mu.Unlock()
	if l.snapshot {
		l.onSnapshotEntry(m, &a, now)
		if a.pending == 0 {
			l.finishSnapshot(now)
		}
		return
	}
	if a.streamSeq > l.consumerSeen {
		l.consumerSeen = a.streamSeq
	}
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
	case m.badHeader:
		// Unreadable: counted as malformed, like a subject outside the
		// bucket.
		applyEntry(w, "", "", nil, a.streamSeq, now)
	default:
		op := ""
		if len(m.headers) > 0 {
			op = m.header("KV-Operation")
		}
		applyEntry(w, m.subject, op, m.data, a.streamSeq, now)
	}
	if a.pending == 0 {
		l.markSynced(now)
	}
}

// applyEntry applies the bucket entry at stream sequence seq (beyond
// w.lastSeq) on subject, from a delivery or a direct get: an entry whose
// subject is outside the bucket is counted as malformed and skipped; one
// the edge state refuses is logged (never fatal). Either way lastSeq moves
// to seq. A plain function: it runs once per entry, interpreted.
func applyEntry(w *Watcher, subject, op string, data []byte, seq uint64, now time.Time) {
	prefix := w.s.kvPrefix
	w.lastSeq = seq
	if len(subject) <= len(prefix) || subject[:len(prefix)] != prefix {
		w.mu.Lock()
		w.stats.Malformed++
		w.mu.Unlock()
		w.state.Touch(now)
		return
	}
	key := subject[len(prefix):]
	// Apply counts and reports refused entries; they are never fatal.
	if err := w.state.Apply(key, op, data, seq, now); err != nil {
		w.logRejected(key, seq, err, now)
	}
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
func (l *link) ownFC(subject string) bool {
	stream, consumer, ok := fcConsumer(subject)
	return ok && stream == l.w.s.stream && consumer == l.name
}

// onStatus handles heartbeats, flow control and errors on the deliver subject.
func (l *link) onStatus(m *message, now time.Time) {
	w := l.w
	if m.status != 100 {
		w.logf("consumer %s on stream %s reported %d %s; recreating it", l.name, w.s.stream, m.status, clip(m.description, 64))
		l.resync(now)
		return
	}
	if strings.HasPrefix(m.description, "FlowControl") {
		if m.reply == "" {
			return
		}
		if !l.ownFC(m.reply) {
			l.hijacked(now, fmt.Sprintf("a flow-control request of another consumer arrived on its deliver subject (%s)", clip(m.reply, 128)))
			return
		}
		l.lastDeliver = now
		w.state.Touch(now)
		l.buf = appendPub(l.buf, m.reply, "", nil, nil)
		w.count(func(st *Stats) { st.FlowControls++ })
		return
	}
	// Idle heartbeat. It must come from this edge's consumer: its counts
	// can only be at or beyond what the edge received from it.
	if last := m.header("Nats-Last-Stream"); last != "" {
		if n, ok := parseUint(last); ok && n < l.consumerSeen {
			l.hijacked(now, fmt.Sprintf("a heartbeat says stream sequence %d, below the %d its consumer delivered: it comes from another consumer", n, l.consumerSeen))
			return
		}
	}
	if last := m.header("Nats-Last-Consumer"); last != "" {
		n, ok := parseUint(last)
		if ok && n+1 < l.expectDseq {
			l.hijacked(now, fmt.Sprintf("a heartbeat says %d messages delivered, but the edge received %d: it comes from another consumer", n, l.expectDseq-1))
			return
		}
		if ok && n >= l.expectDseq {
			w.count(func(st *Stats) { st.Gaps++ })
			w.logf("heartbeat shows missed messages on %s (server delivered %d, got %d); recreating the consumer from sequence %d", l.name, n, l.expectDseq-1, w.lastSeq+1)
			l.resync(now)
			return
		}
	}
	l.lastDeliver = now
	w.state.Touch(now)
	// A stalled consumer names the flow-control reply it is waiting for.
	if fc := m.header("Nats-Consumer-Stalled"); fc != "" && l.ownFC(fc) {
		l.buf = appendPub(l.buf, fc, "", nil, nil)
		w.count(func(st *Stats) { st.FlowControls++ })
	}
	if l.phase == phaseActive && l.snapshot {
		// Idle: the snapshot consumer has delivered everything (unless it
		// is stalled on flow control).
		if m.header("Nats-Consumer-Stalled") == "" {
			l.finishSnapshot(now)
		}
		return
	}
	if l.phase == phaseActive && l.behindSince.IsZero() {
		// The server only sends idle heartbeats once nothing is pending;
		// not while the cross-check saw the stream beyond the edge.
		l.markSynced(now)
	}
}
