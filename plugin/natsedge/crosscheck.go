package natsedge

import (
	"encoding/json"
	"fmt"
	"time"
)

// The cross-check: every CrossCheckInterval the link asks for the stream's
// INFO and compares its last sequence with what the edge applied. It finds
// a consumer that no longer delivers to this edge without saying so
// (deleted, or replaced by another client's consumer pointed at the edge's
// inbox: Stats.Hijacks), and a bucket that was recreated below what the
// edge applied.

// crossCheckTick asks for the stream's INFO when a check is due (on a fixed
// schedule, late by at most a tick) and while a bucket consumer is active.
// The same schedule forgets requests left unanswered for requestTimeout.
func (l *link) crossCheckTick(now time.Time) {
	w := l.w
	if now.Before(l.nextCheck) {
		return
	}
	slot := l.nextCheck
	l.nextCheck = l.nextCheck.Add(w.s.crossCheck)
	if l.nextCheck.Before(now) {
		slot = now
		l.nextCheck = now.Add(w.s.crossCheck)
	}
	l.expireRequests(now, requestTimeout)
	if l.phase == phaseActive && !l.snapshot && !l.infoDenied {
		// The check counts as made at its scheduled time: checks are
		// then exactly an interval apart, whatever the tick.
		l.request(reqInfo, streamInfoSubject(w.s.stream), nil, slot)
	}
}

// streamInfoResponse is the part of a STREAM.INFO answer the check reads.
type streamInfoResponse struct {
	Error apiError `json:"error"`
	State struct {
		FirstSeq uint64 `json:"first_seq"`
		LastSeq  uint64 `json:"last_seq"`
	} `json:"state"`
}

// onStreamInfo is the cross-check: the stream's last sequence against what
// the consumer delivered. A consumer that delivers nothing for a whole
// interval while the stream holds sequences beyond what was applied is not
// delivering to this edge (deleted, or replaced by a consumer someone else
// pointed at the edge's inbox): it is recreated.
func (l *link) onStreamInfo(m *message, req pendingReq, now time.Time) {
	w := l.w
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
	if l.phase != phaseActive || l.snapshot {
		return
	}
	if last < w.lastSeq {
		// The stream restarted below what the edge applied (the bucket was
		// recreated): a consumer from lastSeq+1 would never deliver its
		// new facts. Seen for a whole interval, replay it from the start.
		if l.resetSince.IsZero() {
			l.resetSince = req.sent
			return
		}
		if req.sent.Sub(l.resetSince) >= w.s.crossCheck {
			w.logf("stream %s is at sequence %d, below the %d this edge applied: the bucket was recreated; replaying it from the start", w.s.stream, last, w.lastSeq)
			w.lastSeq = 0
			w.floor = 0
			l.resetSince = time.Time{}
			l.resync(now)
		}
		return
	}
	l.resetSince = time.Time{}
	accounted := w.lastSeq
	if w.floor > accounted {
		accounted = w.floor
	}
	if last <= accounted {
		l.behindSince = time.Time{}
		return
	}
	if l.behindSince.IsZero() || l.expectDseq-1 != l.behindDelivered {
		// Behind, but the message may be in flight, or the consumer is
		// still catching up: look again next interval.
		l.behindSince = req.sent
		l.behindDelivered = l.expectDseq - 1
		return
	}
	if req.sent.Sub(l.behindSince) < w.s.crossCheck {
		return
	}
	l.hijacked(now, fmt.Sprintf("the stream is at sequence %d, the edge applied %d, and nothing arrived for %s", last, accounted, req.sent.Sub(l.behindSince).Round(time.Millisecond)))
}
