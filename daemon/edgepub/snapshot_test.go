package edgepub

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgepass/edgepass/daemon/internal/natstest"
	"github.com/edgepass/edgepass/daemon/internal/poll"
	"github.com/edgepass/edgepass/plugin/edgestate"
)

// revokeMany writes n session revocations (the daemon's exact value form)
// with async publishes, from index from.
func revokeMany(t *testing.T, js jetstream.JetStream, from, n int) {
	t.Helper()
	val := []byte(fmt.Sprintf(`{"exp":%d}`, time.Now().Add(time.Hour).Unix()))
	for i := from; i < from+n; i++ {
		if _, err := js.PublishAsync(fmt.Sprintf("$KV.edge.revoke.session.snap-%036d", i), val); err != nil {
			t.Fatal(err)
		}
		if i%1000 == 999 {
			<-js.PublishAsyncComplete()
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("publishes not acknowledged")
	}
}

// caughtUp waits until w applied the edge stream's last sequence.
func caughtUp(t *testing.T, js jetstream.JetStream, w *Follower) {
	t.Helper()
	ctx := natstest.Context(t)
	s, err := js.Stream(ctx, "KV_edge")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 5*time.Second, "watcher caught up", func() bool { return w.State().LastSeq() >= info.State.LastSeq })
}

// snapshotSetup is a publisher on a settable clock, the daemon's watcher and
// a snapshot writer with small thresholds.
func snapshotSetup(t *testing.T, facts int) (*natstest.Server, *Publisher, *Follower, *SnapshotWriter, *clock) {
	t.Helper()
	srv := natstest.Start(t)
	clk := &clock{now: time.Now()}
	p := openPub(t, srv.JS, nil, func(o *Options) { o.Now = clk.Now })
	w := watch(t, srv.JS, anchors())
	revokeMany(t, srv.JS, 0, facts)
	caughtUp(t, srv.JS, w)
	sw := p.NewSnapshotWriter(w, SnapshotOptions{MinFacts: 100, MinNew: 500, MinNewFraction: 0.5, Interval: time.Minute})
	return srv, p, w, sw, clk
}

func TestSnapshotChunksAreSignedBoundAndUnderTheLimit(t *testing.T) {
	srv, _, w, sw, _ := snapshotSetup(t, 4000)
	ctx := natstest.Context(t)
	res, err := sw.Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Chunks < 2 || res.Facts != 4000 || res.Seq == 0 {
		t.Fatalf("snapshot %+v", res)
	}
	kv, _ := srv.JS.KeyValue(ctx, "edge")
	edge := edgestate.NewWithAnchors(anchors())
	l := edge.NewSnapshotLoader()
	for i := 0; i < res.Chunks; i++ {
		key := edgestate.SnapshotKey(i)
		e, err := kv.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if len(e.Value()) > 62<<10 {
			t.Fatalf("%s is %d bytes: not well under the edge limit", key, len(e.Value()))
		}
		info, err := edgestate.VerifySnapshotChunk(key, e.Value(), anchors())
		if err != nil || info.Gen != res.Gen || info.Seq != res.Seq || info.N != res.Chunks || info.I != i {
			t.Fatalf("%s: %+v %v", key, info, err)
		}
		if err := l.Add(key, "", e.Value(), 0, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	if gen, seq, ok := l.Best(); !ok || gen != res.Gen || seq != res.Seq {
		t.Fatalf("Best = %s %d %v", gen, seq, ok)
	}
	if edge.Stats().Sessions != 4000 || !edge.SessionRevoked(fmt.Sprintf("snap-%036d", 17), time.Now()) {
		t.Fatal("the snapshot does not carry the revocations")
	}
	// The watcher skips its own chunks: not applied, not refused.
	caughtUp(t, srv.JS, w)
	if st := w.State().Stats(); st.Rejected != 0 || st.Applied != 4000 {
		t.Fatalf("watcher stats %+v", st)
	}
}

func TestSnapshotWriterTick(t *testing.T) {
	t.Run("too few facts", func(t *testing.T) {
		_, _, _, sw, _ := snapshotSetup(t, 50)
		if wrote, err := sw.Tick(natstest.Context(t)); wrote || err != nil {
			t.Fatalf("Tick = %v %v, want no snapshot for 50 facts", wrote, err)
		}
	})
	t.Run("interval and new facts", func(t *testing.T) {
		srv, _, w, sw, clk := snapshotSetup(t, 1000)
		ctx := natstest.Context(t)
		if wrote, err := sw.Tick(ctx); !wrote || err != nil {
			t.Fatalf("first Tick = %v %v", wrote, err)
		}
		caughtUp(t, srv.JS, w)
		// Within the interval: nothing, however many new facts.
		revokeMany(t, srv.JS, 1000, 600)
		caughtUp(t, srv.JS, w)
		if wrote, _ := sw.Tick(ctx); wrote {
			t.Fatal("a snapshot within the interval")
		}
		// After it, with few new facts: nothing.
		clk.Set(clk.Now().Add(2 * time.Minute))
		sw2 := sw.p.NewSnapshotWriter(w, SnapshotOptions{MinFacts: 100, MinNew: 700, MinNewFraction: 0.5, Interval: time.Minute})
		if wrote, _ := sw2.Tick(ctx); wrote {
			t.Fatal("a snapshot for 600 new facts of 1,600, thresholds 700 and 50%")
		}
		// Enough new facts: a snapshot.
		revokeMany(t, srv.JS, 1600, 200)
		caughtUp(t, srv.JS, w)
		if wrote, err := sw2.Tick(ctx); !wrote || err != nil {
			t.Fatalf("Tick after 800 new facts = %v %v", wrote, err)
		}
	})
}

// Two daemon replicas deciding at once: the write of chunk 0 is conditional
// on the revision each read, so one of them writes.
func TestSnapshotWriterLosesARaceQuietly(t *testing.T) {
	srv, _, _, sw, _ := snapshotSetup(t, 500)
	ctx := natstest.Context(t)
	res, err := sw.Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h, err := sw.head(ctx)
	if err != nil || !h.valid || h.info.Gen != res.Gen {
		t.Fatalf("head %+v %v", h, err)
	}
	// Another replica writes after we read the head.
	if _, err := sw.Write(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := sw.write(ctx, h.rev, true); err != errSnapshotRace {
		t.Fatalf("write on a stale revision = %v, want errSnapshotRace", err)
	}
	kv, _ := srv.JS.KeyValue(ctx, "edge")
	if _, err := kv.Get(ctx, "snapshot.0"); err != nil {
		t.Fatal(err)
	}
}

func TestSnapshotWriterPurgesStaleChunkKeys(t *testing.T) {
	srv, _, _, sw, _ := snapshotSetup(t, 500)
	ctx := natstest.Context(t)
	kv, _ := srv.JS.KeyValue(ctx, "edge")
	for _, k := range []string{"snapshot.5", "snapshot.junk"} {
		if _, err := kv.Put(ctx, k, []byte("left over")); err != nil {
			t.Fatal(err)
		}
	}
	res, err := sw.Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Chunks != 1 || res.Purged != 2 {
		t.Fatalf("snapshot %+v, want 1 chunk and 2 keys purged", res)
	}
	for _, k := range []string{"snapshot.5", "snapshot.junk"} {
		if _, err := kv.Get(ctx, k); err != jetstream.ErrKeyNotFound && err != jetstream.ErrKeyDeleted {
			t.Fatalf("%s: %v, want purged", k, err)
		}
	}
}

// A snapshot signed by another anchor (a rotated or foreign one) does not
// count as recent: the writer replaces it.
func TestSnapshotWriterReplacesAForeignHead(t *testing.T) {
	srv, _, _, sw, _ := snapshotSetup(t, 500)
	ctx := natstest.Context(t)
	kv, _ := srv.JS.KeyValue(ctx, "edge")
	if _, err := kv.Put(ctx, "snapshot.0", []byte("not a chunk")); err != nil {
		t.Fatal(err)
	}
	if wrote, err := sw.Tick(ctx); !wrote || err != nil {
		t.Fatalf("Tick = %v %v", wrote, err)
	}
	e, err := kv.Get(ctx, "snapshot.0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := edgestate.VerifySnapshotChunk("snapshot.0", e.Value(), anchors()); err != nil {
		t.Fatal(err)
	}
}
