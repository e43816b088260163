package natsedge

import (
	"strings"
	"time"
)

// The first sync of an edge with trust anchors reads the daemon's signed
// snapshot (docs/contracts.md, "Snapshots") before the bucket:
// createConsumer points the link's consumer at the snapshot.> subjects,
// onSnapshotEntry applies each verified chunk, and finishSnapshot then
// creates the bucket's consumer after the newest complete generation.

// onSnapshotEntry hands an entry of the snapshot consumer to the loader: a
// verified chunk's facts are applied at once; which sequence the edge
// resumes after is decided when the consumer caught up (finishSnapshot).
func (l *link) onSnapshotEntry(m *message, a *ackInfo, now time.Time) {
	w := l.w
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
func (l *link) finishSnapshot(now time.Time) {
	w := l.w
	loader := w.snap
	w.snap = nil // (one assignment each: yaegi fails a nil in a tuple assignment)
	w.snapDone = true
	if loader != nil {
		gen, seq, ok := loader.Best()
		if ok {
			loader.Adopt(seq, now)
			w.lastSeq = seq
			w.mu.Lock()
			w.stats.SnapshotSeq = seq
			w.mu.Unlock()
			w.logf("loaded snapshot %s of bucket %s: %d facts in %d chunks, consistent with sequence %d; following the bucket from %d", clip(gen, 64), w.s.bucket, loader.Facts, loader.Chunks, seq, seq+1)
		} else if loader.Seen() > 0 {
			w.logf("no complete snapshot in bucket %s (%d generations seen, %d chunks applied); replaying the whole bucket", w.s.bucket, loader.Seen(), loader.Chunks)
		}
	}
	l.dropConsumer(now)
	l.snapshot = false
	l.planSlots(l.slot)
	l.createConsumer(now)
}
