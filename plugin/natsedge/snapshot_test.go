package natsedge

import (
	"crypto/ed25519"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/token"
)

// snapshotChunks cuts a daemon-side state holding n session revocations
// (sequences 1..n) into signed chunks; it returns their values and seq.
func snapshotChunks(t *testing.T, priv ed25519.PrivateKey, gen string, n int) ([][]byte, uint64) {
	t.Helper()
	pub := priv.Public().(ed25519.PublicKey)
	s := edgestate.NewWithAnchors(token.NewKeySet(token.Key{ID: token.AnchorID(pub), Public: pub}))
	for i := 1; i <= n; i++ {
		if err := s.Apply("revoke.session.s"+strconv.Itoa(i), "", []byte(`{"exp":0}`), uint64(i), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	values, seq, err := s.Cut().Sign(gen, time.Now().UnixMilli(), priv)
	if err != nil {
		t.Fatal(err)
	}
	return values, seq
}

// The first sync with trust anchors reads snapshot.>, adopts the complete
// generation, and follows the bucket from its sequence + 1; it is synced
// only once that consumer caught up.
func TestFirstSyncStartsFromACompleteSnapshot(t *testing.T) {
	priv, anchor := testAnchor(t)
	values, seq := snapshotChunks(t, priv, "g1", 3000)
	if len(values) != 2 {
		t.Fatalf("%d chunks", len(values))
	}
	srv := newFakeServer(t)
	w, logs := startWatcher(t, Config{URLs: []string{srv.url()}, TrustAnchors: []string{anchor}})
	fc := srv.next(5 * time.Second)
	cr := fc.expectCreate(t, testBucket, 5*time.Second)
	if c := cr.req.Config; c.FilterSubject != "$KV.edge.snapshot.>" || c.DeliverPolicy != "last_per_subject" {
		t.Fatalf("snapshot consumer %+v", c)
	}
	fc.replyCreated(cr, 3)
	fc.deliver(cr, testBucket, "snapshot.1", "", string(values[1]), 3010, 1, 2)
	fc.deliver(cr, testBucket, "snapshot.7", "PURGE", "", 3011, 2, 1) // a purged stale chunk
	fc.deliver(cr, testBucket, "snapshot.0", "", string(values[0]), 3012, 3, 0)
	// The snapshot consumer is deleted, the bucket's created in another slot.
	fc.expect(t, "PUB", "$JS.API.CONSUMER.DELETE.KV_edge."+cr.name, 5*time.Second)
	main := fc.expectCreate(t, testBucket, 5*time.Second)
	if c := main.req.Config; c.FilterSubject != "$KV.edge.>" || c.DeliverPolicy != "by_start_sequence" || c.OptStartSeq != seq+1 || main.name == cr.name {
		t.Fatalf("main consumer %+v (snapshot consumer %s)", main.req, cr.name)
	}
	if w.State().Synced() {
		t.Fatal("synced before the bucket's own consumer caught up")
	}
	fc.replyCreated(main, 3)
	fc.deliver(main, testBucket, "revoke.session.after", "", `{"exp":0}`, int(seq)+1, 1, 2)
	fc.deliver(main, testBucket, "snapshot.1", "", string(values[1]), 3010, 2, 1)
	fc.deliver(main, testBucket, "snapshot.0", "", string(values[0]), 3012, 3, 0)
	waitFor(t, "synced", 5*time.Second, func() bool { return w.State().Synced() })
	st := w.State()
	if !st.SessionRevoked("s1", time.Now()) || !st.SessionRevoked("s3000", time.Now()) || !st.SessionRevoked("after", time.Now()) {
		t.Fatal("facts of the snapshot or after it missing")
	}
	if ws := w.Stats(); ws.SnapshotSeq != seq || ws.SnapshotChunks != 2 || st.Stats().Rejected != 0 || st.LastSeq() != 3012 {
		t.Fatalf("watcher %+v state %+v", ws, st.Stats())
	}
	if logs.count("loaded snapshot g1") != 1 {
		t.Fatalf("log:\n%s", logs)
	}
}

// Without trust anchors no snapshot can be verified: no snapshot phase.
func TestNoSnapshotPhaseWithoutTrustAnchors(t *testing.T) {
	srv := newFakeServer(t)
	startWatcher(t, Config{URLs: []string{srv.url()}})
	fc := srv.next(5 * time.Second)
	cr := fc.expectCreate(t, testBucket, 5*time.Second)
	if cr.req.Config.FilterSubject != "$KV.edge.>" {
		t.Fatalf("first consumer %+v", cr.req.Config)
	}
}

// A snapshot consumer the server refuses costs nothing but the attempt:
// the next consumer replays the bucket.
func TestRefusedSnapshotConsumerFallsBackToFullReplay(t *testing.T) {
	_, anchor := testAnchor(t)
	srv := newFakeServer(t)
	w, _ := startWatcher(t, Config{URLs: []string{srv.url()}, TrustAnchors: []string{anchor}})
	fc := srv.next(5 * time.Second)
	cr := fc.expectCreate(t, testBucket, 5*time.Second)
	fc.replyError(cr.reply, 500, 10999, "something odd")
	main := fc.expectCreate(t, testBucket, 10*time.Second)
	if c := main.req.Config; c.FilterSubject != "$KV.edge.>" || c.DeliverPolicy != "last_per_subject" {
		t.Fatalf("after the refusal: %+v", c)
	}
	fc.replyCreated(main, 1)
	fc.deliver(main, testBucket, "revoke.session.a", "", `{"exp":0}`, 1, 1, 0)
	waitFor(t, "synced", 5*time.Second, func() bool { return w.State().Synced() })
}

// An idle heartbeat ends the snapshot phase (nothing more to deliver);
// with no complete generation (a chunk missing) the bucket is replayed.
func TestIncompleteSnapshotEndsOnHeartbeatWithFullReplay(t *testing.T) {
	priv, anchor := testAnchor(t)
	values, _ := snapshotChunks(t, priv, "g1", 3000)
	w, logs, fc, cr := following(t, Config{TrustAnchors: []string{anchor}}, 5)
	fc.deliver(cr, testBucket, "snapshot.0", "", string(values[0]), 3001, 1, 4)
	// Stalled on flow control: not the end.
	fc.status(cr, "", fmt.Sprintf("NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 1\r\nNats-Last-Stream: 3001\r\nNats-Consumer-Stalled: $JS.FC.KV_edge.%s.x\r\n\r\n", cr.name))
	fc.expect(t, "PUB", "$JS.FC.KV_edge."+cr.name+".x", 5*time.Second)
	fc.status(cr, "", "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 1\r\nNats-Last-Stream: 3001\r\n\r\n")
	main := fc.expectCreate(t, testBucket, 5*time.Second)
	if c := main.req.Config; c.FilterSubject != "$KV.edge.>" || c.DeliverPolicy != "last_per_subject" || c.OptStartSeq != 0 {
		t.Fatalf("main consumer %+v", c)
	}
	if w.Stats().SnapshotSeq != 0 || logs.count("no complete snapshot") != 1 {
		t.Fatalf("stats %+v log:\n%s", w.Stats(), logs)
	}
	// Chunk 0's facts are genuine and were applied; the replay brings the rest.
	fc.replyCreated(main, 1)
	fc.deliver(main, testBucket, "revoke.session.s2999", "", `{"exp":0}`, 2999, 1, 0)
	waitFor(t, "synced", 5*time.Second, func() bool { return w.State().Synced() })
}

// Attack: a forged chunk on the snapshot consumer is refused and counted;
// the edge replays the bucket.
func TestForgedSnapshotChunkOnTheWireRefused(t *testing.T) {
	_, anchor := testAnchor(t)
	rogue, _ := testAnchor(t)
	values, _ := snapshotChunks(t, rogue, "evil", 10)
	w, _, fc, cr := following(t, Config{TrustAnchors: []string{anchor}}, 1)
	fc.deliver(cr, testBucket, "snapshot.0", "", string(values[0]), 11, 1, 0)
	main := fc.expectCreate(t, testBucket, 5*time.Second)
	if c := main.req.Config; c.DeliverPolicy != "last_per_subject" {
		t.Fatalf("main consumer %+v", c)
	}
	if ws := w.Stats(); ws.SnapshotRefused != 1 || ws.SnapshotSeq != 0 || w.State().Stats().Sessions != 0 {
		t.Fatalf("stats %+v", ws)
	}
}
