package edgepub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgepass/edgepass/plugin/edgestate"
)

// Snapshot defaults (SnapshotOptions).
const (
	DefaultSnapshotMinFacts       = 2000
	DefaultSnapshotMinNew         = 5000
	DefaultSnapshotMinNewFraction = 0.10
	DefaultSnapshotInterval       = 5 * time.Minute
)

// SnapshotOptions says when the daemon writes a snapshot of the edge state.
type SnapshotOptions struct {
	// MinFacts: no snapshot while the state holds fewer facts; an edge
	// replays that many in well under a second. Default 2,000.
	MinFacts int
	// MinNew and MinNewFraction: a snapshot is due once at least MinNew
	// facts (default 5,000), or MinNewFraction of the facts held (default
	// 10%), arrived since the newest snapshot.
	MinNew         int
	MinNewFraction float64
	// Interval: at most one snapshot per Interval, whichever daemon replica
	// wrote the last one (replicas share the bucket). Default 5 minutes.
	Interval time.Duration
	// Logger receives one line per snapshot written; default: discard.
	Logger *slog.Logger
}

// SnapshotWriter maintains the signed snapshot of the edge state in the edge
// bucket (keys snapshot.0 … snapshot.<n-1>, docs/contracts.md "Edge state"):
// a cut of the daemon's own edge watcher state, signed with the trust
// anchor, so that a starting edge loads most facts in a few large messages
// and replays only what came after the cut. Safe for concurrent use.
type SnapshotWriter struct {
	p  *Publisher
	w  *Follower
	o  SnapshotOptions
	mu sync.Mutex // one write at a time in this process
	// own is this process's newest snapshot: the messages it wrote after
	// the cut, subtracted when counting new facts.
	own SnapshotResult
}

// SnapshotResult describes a snapshot written.
type SnapshotResult struct {
	Gen    string
	Seq    uint64 // every live fact up to this stream sequence is in it
	Chunks int
	Facts  int
	Bytes  int
	Purged int // chunk keys of an older, longer generation purged
	Took   time.Duration
}

// NewSnapshotWriter returns a writer cutting w's state (the daemon's own
// watcher of the edge bucket this publisher writes).
func (p *Publisher) NewSnapshotWriter(w *Follower, o SnapshotOptions) *SnapshotWriter {
	if o.MinFacts <= 0 {
		o.MinFacts = DefaultSnapshotMinFacts
	}
	if o.MinNew <= 0 {
		o.MinNew = DefaultSnapshotMinNew
	}
	if o.MinNewFraction <= 0 {
		o.MinNewFraction = DefaultSnapshotMinNewFraction
	}
	if o.Interval <= 0 {
		o.Interval = DefaultSnapshotInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &SnapshotWriter{p: p, w: w, o: o}
}

// errSnapshotRace: another replica replaced snapshot.0 between our read and
// our write; it is writing the snapshot, we are not.
var errSnapshotRace = errors.New("edgepub: another replica is writing the snapshot")

// snapshotHead is what snapshot.0 says.
type snapshotHead struct {
	rev   uint64 // its KV revision, 0 when absent
	valid bool   // a chunk signed by our anchor
	info  edgestate.SnapshotInfo
}

func (sw *SnapshotWriter) head(ctx context.Context) (snapshotHead, error) {
	key := edgestate.SnapshotKey(0)
	e, err := sw.p.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return snapshotHead{}, nil
	}
	if err != nil {
		return snapshotHead{}, fmt.Errorf("edgepub: snapshot: read %s: %w", key, err)
	}
	h := snapshotHead{rev: e.Revision()}
	if info, err := edgestate.VerifySnapshotChunk(key, e.Value(), sw.p.anchors); err == nil {
		h.valid, h.info = true, info
	}
	return h, nil
}

// worthIt reports whether the state is worth a snapshot at all (no read of
// the bucket): the watcher replayed it and holds at least MinFacts facts.
func (sw *SnapshotWriter) worthIt() bool {
	select {
	case <-sw.w.Synced():
	default:
		return false
	}
	st := sw.w.State().Stats()
	return st.Sessions+st.Users+st.Groups >= sw.o.MinFacts
}

// due reports whether a snapshot should be written now, given the newest
// one (h), and why not.
func (sw *SnapshotWriter) due(h snapshotHead, now time.Time) (bool, string) {
	if !sw.worthIt() {
		return false, fmt.Sprintf("fewer than %d facts, or the watcher is replaying", sw.o.MinFacts)
	}
	st := sw.w.State().Stats()
	facts := st.Sessions + st.Users + st.Groups
	if !h.valid {
		return true, ""
	}
	if age := now.Sub(time.UnixMilli(h.info.Iat)); age < sw.o.Interval {
		return false, fmt.Sprintf("the newest snapshot is %s old", age.Round(time.Second))
	}
	// Messages after the snapshot's cut, less its own chunks (and the
	// purges this process wrote with it): the facts an edge starting from
	// it replays.
	after := int64(st.LastSeq) - int64(h.info.Seq) - int64(h.info.N)
	if sw.own.Gen == h.info.Gen {
		after -= int64(sw.own.Purged)
	}
	if after < int64(sw.o.MinNew) && float64(after) < sw.o.MinNewFraction*float64(facts) {
		return false, fmt.Sprintf("%d facts since the newest snapshot", after)
	}
	return true, ""
}

// Tick writes a snapshot if one is due (run it on the maintenance tick):
// enough facts held, enough new since the newest snapshot, and none written
// by any replica within the interval. It reports whether it wrote one.
func (sw *SnapshotWriter) Tick(ctx context.Context) (bool, error) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if !sw.worthIt() {
		return false, nil
	}
	h, err := sw.head(ctx)
	if err != nil {
		return false, err
	}
	if ok, _ := sw.due(h, sw.p.o.Now()); !ok {
		return false, nil
	}
	_, err = sw.write(ctx, h.rev, true)
	if errors.Is(err, errSnapshotRace) {
		return false, nil
	}
	return err == nil, err
}

// Write writes a snapshot now, whatever the thresholds say.
func (sw *SnapshotWriter) Write(ctx context.Context) (SnapshotResult, error) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return sw.write(ctx, 0, false)
}

// write cuts the state, signs the chunks and stores them. Chunk 0 goes
// first, conditional on the revision read (cas): of two replicas deciding
// at once, one writes. Then the other chunks, then purges of chunk keys
// beyond the new count. Until the last chunk is stored the new generation
// is incomplete and edges starting meanwhile replay the whole bucket.
func (sw *SnapshotWriter) write(ctx context.Context, rev uint64, cas bool) (SnapshotResult, error) {
	start := time.Now()
	if err := sw.p.bucket.Raise(ctx); err != nil {
		return SnapshotResult{}, fmt.Errorf("edgepub: snapshot: %w", err)
	}
	cut := sw.w.State().Cut()
	var g [16]byte
	if _, err := rand.Read(g[:]); err != nil {
		return SnapshotResult{}, fmt.Errorf("edgepub: snapshot: %w", err)
	}
	gen := hex.EncodeToString(g[:])
	values, seq, err := cut.Sign(gen, sw.p.o.Now().UnixMilli(), sw.p.o.Anchor)
	if err != nil {
		return SnapshotResult{}, fmt.Errorf("edgepub: %w", err)
	}
	res := SnapshotResult{Gen: gen, Seq: seq, Chunks: len(values), Facts: cut.Facts()}
	for i, v := range values {
		key := edgestate.SnapshotKey(i)
		switch {
		case i == 0 && cas && rev == 0:
			_, err = sw.p.kv.Create(ctx, key, v)
		case i == 0 && cas:
			_, err = sw.p.kv.Update(ctx, key, v, rev)
		default:
			_, err = sw.p.kv.Put(ctx, key, v)
		}
		if i == 0 && (errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)) {
			return SnapshotResult{}, errSnapshotRace
		}
		if err != nil {
			return SnapshotResult{}, fmt.Errorf("edgepub: snapshot: write %s: %w", key, err)
		}
		res.Bytes += len(v)
	}
	purged, err := sw.purgeBeyond(ctx, len(values))
	res.Purged = purged
	if err != nil {
		return res, err
	}
	res.Took = time.Since(start)
	sw.own = res
	sw.o.Logger.Info("edge snapshot written", "gen", gen, "seq", seq, "facts", res.Facts, "chunks", res.Chunks, "bytes", res.Bytes, "purged", purged, "took", res.Took.Round(time.Millisecond))
	return res, nil
}

// purgeBeyond purges the chunk keys snapshot.<i>, i >= n (left by a
// longer generation), so edges do not read them.
func (sw *SnapshotWriter) purgeBeyond(ctx context.Context, n int) (int, error) {
	lister, err := sw.p.kv.ListKeysFiltered(ctx, edgestate.PrefixSnapshot+">")
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("edgepub: snapshot: list chunk keys: %w", err)
	}
	var stale []string
	for key := range lister.Keys() {
		i, err := strconv.Atoi(strings.TrimPrefix(key, edgestate.PrefixSnapshot))
		if err != nil || i >= n {
			stale = append(stale, key)
		}
	}
	_ = lister.Stop()
	for _, key := range stale {
		if err := sw.p.kv.Purge(ctx, key); err != nil {
			return 0, fmt.Errorf("edgepub: snapshot: purge %s: %w", key, err)
		}
	}
	return len(stale), nil
}
