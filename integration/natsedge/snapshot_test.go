package natsedge_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/daemon/edgepub"
	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/natsedge"
	"github.com/edgepass/edgepass/plugin/token"
	"github.com/nats-io/nats.go"
)

// daemonSide is the daemon's part of the edge bucket: its publisher, its own
// watcher (a full native replay: the reference every edge must agree with)
// and the snapshot writer cutting that watcher's state.
type daemonSide struct {
	wr         *writer
	pub        *edgepub.Publisher
	watch      *edgepub.Follower
	snap       *edgepub.SnapshotWriter
	anchor     ed25519.PrivateKey
	anchors    *token.KeySet
	anchorText string
}

func startDaemonSide(t testing.TB, wr *writer) *daemonSide {
	t.Helper()
	anchor, anchorText := newAnchor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pub, err := edgepub.OpenPublisher(ctx, wr.js, edgepub.Options{Bucket: bucket, Lifetime: 12 * time.Hour, Anchor: anchor})
	if err != nil {
		t.Fatal(err)
	}
	ks := token.NewKeySet(token.Key{ID: token.AnchorID(anchor.Public().(ed25519.PublicKey)), Public: anchor.Public().(ed25519.PublicKey)})
	w, err := edgepub.Follow(ctx, wr.js, bucket, ks, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	select {
	case <-w.Synced():
	case <-ctx.Done():
		t.Fatal("daemon watcher never synced")
	}
	return &daemonSide{wr: wr, pub: pub, watch: w, snap: pub.NewSnapshotWriter(w, edgepub.SnapshotOptions{}), anchor: anchor, anchors: ks, anchorText: anchorText}
}

// streamLast is the edge stream's last sequence.
func (d *daemonSide) streamLast(t testing.TB) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := d.wr.edgeStream(t, ctx)
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

// caughtUp waits until the daemon's watcher applied everything in the stream.
func (d *daemonSide) caughtUp(t testing.TB) {
	t.Helper()
	last := d.streamLast(t)
	waitFor(t, "daemon watcher caught up", 120*time.Second, func() bool { return d.watch.State().LastSeq() >= last })
}

// snapshot writes a snapshot of everything published so far.
func (d *daemonSide) snapshot(t testing.TB) edgepub.SnapshotResult {
	t.Helper()
	d.caughtUp(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	res, err := d.snap.Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// chunkValues reads the current snapshot chunk values (snapshot.0..n-1).
func (d *daemonSide) chunkValues(t testing.TB, n int) [][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out [][]byte
	for i := 0; i < n; i++ {
		e, err := d.wr.kv.Get(ctx, edgestate.SnapshotKey(i))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e.Value())
	}
	return out
}

func (d *daemonSide) putRaw(t testing.TB, key string, value []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := d.wr.kv.Put(ctx, key, value); err != nil {
		t.Fatal(err)
	}
}

// sid is a session id of the daemon's form (43 base64url characters).
func sid(prefix string, i int) string {
	s := fmt.Sprintf("%s%07d", prefix, i)
	return strings.Repeat("x", 43-len(s)) + s
}

// revokeExact publishes n session revocations in the daemon's exact form
// ({"exp":N}) with async publishes.
func revokeExact(tb testing.TB, wr *writer, prefix string, n int) {
	tb.Helper()
	val := []byte(fmt.Sprintf(`{"exp":%d}`, time.Now().Add(time.Hour).Unix()))
	for i := 0; i < n; i++ {
		if _, err := wr.js.PublishAsync("$KV."+bucket+"."+edgestate.PrefixRevokeSession+sid(prefix, i), val); err != nil {
			tb.Fatal(err)
		}
		if i%2000 == 1999 {
			waitPublished(tb, wr)
		}
	}
	waitPublished(tb, wr)
}

// facts is what a test wrote, to compare decisions over.
type facts struct {
	sids     []string
	subjects []string
}

// populate writes n bulk revocations (prefix p) and a little of every other
// kind of fact through the daemon's publisher.
func (d *daemonSide) populate(t testing.TB, f *facts, p string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	revokeExact(t, d.wr, p, n)
	for i := 0; i < n; i++ {
		f.sids = append(f.sids, sid(p, i))
	}
	one := sid(p+"pub", 0)
	if err := d.pub.RevokeSession(ctx, one, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	f.sids = append(f.sids, one, sid(p+"never", 0))
	users := []string{p + "-alice", p + "-bob", p + "-carol", p + "-dave"}
	f.subjects = append(f.subjects, users...)
	if err := d.pub.RevokeUser(ctx, users[0], time.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := d.pub.SetGroups(ctx, users[1], []string{"ops", p}); err != nil {
		t.Fatal(err)
	}
	if err := d.pub.SetAdminGroups(ctx, users[2], []string{"admins"}); err != nil {
		t.Fatal(err)
	}
	if err := d.pub.SetGroups(ctx, users[3], []string{"gone"}); err != nil {
		t.Fatal(err)
	}
	if err := d.pub.ClearGroups(ctx, users[3]); err != nil {
		t.Fatal(err)
	}
	pk, _, _ := ed25519.GenerateKey(nil)
	jwks, _ := token.NewKeySet(token.Key{ID: "k-" + p, Public: pk}).MarshalJWKS()
	if err := d.pub.PublishKeys(ctx, edgestate.KeysFact{JWKS: jwks, MaxTokenLifetime: 12 * 3600}); err != nil {
		t.Fatal(err)
	}
}

// sameDecisions fails unless the edge decides as the daemon's full replay
// does on every fact written.
func sameDecisions(t testing.TB, edge, ref *edgestate.State, f *facts) {
	t.Helper()
	now := time.Now()
	for _, s := range f.sids {
		if edge.SessionRevoked(s, now) != ref.SessionRevoked(s, now) {
			t.Fatalf("session %s: edge %v, full replay %v", s, edge.SessionRevoked(s, now), ref.SessionRevoked(s, now))
		}
	}
	for _, sub := range f.subjects {
		sk := token.SubjectKey(sub)
		for _, iat := range []int64{now.Add(-2 * time.Minute).Unix(), now.Unix() + 1} {
			if edge.UserRevoked(sk, iat, now) != ref.UserRevoked(sk, iat, now) {
				t.Fatalf("user %s at %d differs", sub, iat)
			}
			ge, oke := edge.GroupsOverride(sk, iat)
			gr, okr := ref.GroupsOverride(sk, iat)
			if oke != okr || strings.Join(ge, ",") != strings.Join(gr, ",") {
				t.Fatalf("groups of %s at %d: edge %v %v, full replay %v %v", sub, iat, ge, oke, gr, okr)
			}
		}
	}
	if !edge.Keys().Equal(ref.Keys()) || edge.MaxTokenLifetime() != ref.MaxTokenLifetime() {
		t.Fatal("keys differ")
	}
	se, sr := edge.Stats(), ref.Stats()
	if se.Sessions != sr.Sessions || se.Users != sr.Users || se.Groups != sr.Groups || se.Keys != sr.Keys {
		t.Fatalf("edge %+v, full replay %+v", se, sr)
	}
}

// populatedDaemon starts a NATS server and the daemon side on it, and
// writes n bulk revocations (prefix p) and a little of every other kind of
// fact (populate).
func populatedDaemon(t testing.TB, p string, n int) (*natsServer, *daemonSide, *facts) {
	t.Helper()
	ns := startServer(t, nil)
	d := startDaemonSide(t, newWriter(t, ns.url()))
	f := &facts{}
	d.populate(t, f, p, n)
	return ns, d, f
}

// edgeSynced starts an edge with the daemon's anchor and waits until it
// caught up with the stream.
func (d *daemonSide) edgeSynced(t *testing.T, ns *natsServer, replica string) *natsedge.Watcher {
	t.Helper()
	w, _ := d.startEdge(t, natsedge.Config{URLs: []string{ns.url()}, ReplicaID: replica, EdgeName: replica})
	d.waitEdgeSynced(t, w)
	return w
}

// startEdge starts an edge configured by cfg and the daemon's anchor.
func (d *daemonSide) startEdge(t *testing.T, cfg natsedge.Config) (*natsedge.Watcher, *logSink) {
	t.Helper()
	cfg.TrustAnchors = []string{d.anchorText}
	return watch(t, cfg)
}

// waitEdgeSynced waits until the edge caught up with the stream as it is
// now, and the daemon's watcher too.
func (d *daemonSide) waitEdgeSynced(t *testing.T, w *natsedge.Watcher) {
	t.Helper()
	last := d.streamLast(t)
	waitFor(t, "edge synced", 60*time.Second, func() bool { return w.State().Synced() && w.State().LastSeq() >= last })
	d.caughtUp(t)
}

func TestSnapshotRoundTrip(t *testing.T) {
	ns, d, f := populatedDaemon(t, "a", 5000)
	res := d.snapshot(t)
	if res.Chunks < 3 || res.Seq == 0 || res.Facts < 5000 {
		t.Fatalf("snapshot %+v", res)
	}
	// Facts after the cut, of every kind, some replacing facts in it.
	d.populate(t, f, "b", 300)
	ctx := context.Background()
	if err := d.pub.SetGroups(ctx, "a-bob", []string{"changed"}); err != nil {
		t.Fatal(err)
	}
	if err := d.pub.ClearGroups(ctx, "a-carol"); err != nil {
		t.Fatal(err)
	}

	w := d.edgeSynced(t, ns, "rt")
	st := w.Stats()
	if st.SnapshotSeq != res.Seq || st.SnapshotChunks != uint64(res.Chunks) || st.SnapshotRefused != 0 {
		t.Fatalf("edge stats %+v, snapshot %+v", st, res)
	}
	// Loaded from the snapshot: the edge received the chunks (twice: from
	// snapshot.> and again after the cut) and the facts after the cut, not
	// the 5,000 facts before it one by one.
	if st.Delivered > uint64(2*res.Chunks+400) {
		t.Fatalf("edge received %d entries: the snapshot did not spare the replay", st.Delivered)
	}
	if w.State().Stats().Rejected != 0 {
		t.Fatalf("rejected %d", w.State().Stats().Rejected)
	}
	sameDecisions(t, w.State(), d.watch.State(), f)

	// Live after the snapshot start.
	d.putRaw(t, edgestate.PrefixRevokeSession+sid("live", 1), []byte(revokeValue()))
	waitFor(t, "live revocation", 10*time.Second, func() bool { return revoked(w, sid("live", 1)) })
	// A newer snapshot written while the edge runs changes nothing there.
	d.snapshot(t)
	d.caughtUp(t)
	waitFor(t, "edge follows the new chunks", 10*time.Second, func() bool { return w.State().LastSeq() == d.streamLast(t) })
	if w.State().Stats().Rejected != 0 {
		t.Fatalf("snapshot chunks counted as rejected during normal operation: %d", w.State().Stats().Rejected)
	}
	sameDecisions(t, w.State(), d.watch.State(), f)
}

// Attack: a writer of the bucket (not the daemon) offers a snapshot that
// would make the edge skip revocations: unsigned, signed by another key, or
// a genuine chunk copied under another chunk's key.
func TestForgedSnapshotIgnored(t *testing.T) {
	// forged is a chunk claiming a sequence past every fact and holding none.
	forged := func(d *daemonSide) []byte {
		return []byte(fmt.Sprintf(`{"key":"snapshot.0","iat":%d,"gen":"evil","seq":%d,"n":1,"i":0}`, time.Now().UnixMilli(), d.streamLast(t)+1000))
	}
	for _, tt := range []struct {
		name  string
		forge func(t *testing.T, d *daemonSide, res edgepub.SnapshotResult)
	}{
		{"unsigned", func(t *testing.T, d *daemonSide, _ edgepub.SnapshotResult) {
			d.putRaw(t, "snapshot.0", forged(d))
		}},
		{"rogue-signed", func(t *testing.T, d *daemonSide, _ edgepub.SnapshotResult) {
			_, rogue, _ := ed25519.GenerateKey(nil)
			v, err := token.SignFact(forged(d), rogue)
			if err != nil {
				t.Fatal(err)
			}
			d.putRaw(t, "snapshot.0", []byte(v))
		}},
		{"copied to another key", func(t *testing.T, d *daemonSide, res edgepub.SnapshotResult) {
			v := d.chunkValues(t, res.Chunks)
			d.putRaw(t, "snapshot.1", v[0])
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ns, d, f := populatedDaemon(t, "f", 3000)
			res := d.snapshot(t)
			if res.Chunks < 2 {
				t.Fatalf("snapshot %+v", res)
			}
			tt.forge(t, d, res)
			w := d.edgeSynced(t, ns, "forged")
			st := w.Stats()
			if st.SnapshotSeq != 0 || st.SnapshotRefused == 0 {
				t.Fatalf("edge stats %+v: the forged chunk was not refused, or a snapshot was adopted", st)
			}
			sameDecisions(t, w.State(), d.watch.State(), f)
		})
	}
}

func TestMixedSnapshotGenerationsNotCombined(t *testing.T) {
	ns, d, f := populatedDaemon(t, "m", 3000)
	a := d.snapshot(t)
	old := d.chunkValues(t, a.Chunks)
	// Between the two cuts: revocations only the newer generation holds.
	d.populate(t, f, "n", 200)
	b := d.snapshot(t)
	if a.Chunks != 2 || b.Chunks != 2 || b.Seq <= a.Seq {
		t.Fatalf("snapshots %+v %+v", a, b)
	}
	// snapshot.0 of the newer generation, snapshot.1 of the older: genuine
	// chunks, but no cut.
	d.putRaw(t, "snapshot.1", old[1])
	w := d.edgeSynced(t, ns, "mixed")
	if st := w.Stats(); st.SnapshotSeq != 0 || st.SnapshotChunks != 2 {
		t.Fatalf("edge stats %+v: two generations were combined", st)
	}
	sameDecisions(t, w.State(), d.watch.State(), f)
}

func TestMissingChunkFallsBackToFullReplay(t *testing.T) {
	ns, d, f := populatedDaemon(t, "x", 3000)
	res := d.snapshot(t)
	if res.Chunks != 2 {
		t.Fatalf("snapshot %+v", res)
	}
	if err := d.wr.kv.Purge(context.Background(), "snapshot.1"); err != nil {
		t.Fatal(err)
	}
	w := d.edgeSynced(t, ns, "missing")
	st := w.Stats()
	if st.SnapshotSeq != 0 || st.Delivered < 3000 {
		t.Fatalf("edge stats %+v: want a full replay", st)
	}
	sameDecisions(t, w.State(), d.watch.State(), f)
}

// An old genuine snapshot, left by the daemon or put back by an attacker
// who saved it, is a safe start: everything after its cut is replayed,
// including key rotations, cleared overrides and revocations.
func TestOldSnapshotIsASafeStart(t *testing.T) {
	ns, d, f := populatedDaemon(t, "o", 3000)
	old := d.snapshot(t)
	oldValues := d.chunkValues(t, old.Chunks)
	ctx := context.Background()
	d.populate(t, f, "p", 500) // new keys, revocations, overrides
	if err := d.pub.ClearGroups(ctx, "o-bob"); err != nil {
		t.Fatal(err)
	}
	if err := d.pub.RevokeUser(ctx, "o-dave", time.Now()); err != nil {
		t.Fatal(err)
	}
	t.Run("left behind", func(t *testing.T) {
		w := d.edgeSynced(t, ns, "old1")
		if st := w.Stats(); st.SnapshotSeq != old.Seq {
			t.Fatalf("edge stats %+v, want the snapshot at %d", st, old.Seq)
		}
		sameDecisions(t, w.State(), d.watch.State(), f)
	})
	t.Run("put back over a newer one", func(t *testing.T) {
		newer := d.snapshot(t)
		for i, v := range oldValues {
			d.putRaw(t, edgestate.SnapshotKey(i), v)
		}
		w := d.edgeSynced(t, ns, "old2")
		if st := w.Stats(); st.SnapshotSeq != old.Seq || newer.Seq <= old.Seq {
			t.Fatalf("edge stats %+v, old %d newer %d", st, old.Seq, newer.Seq)
		}
		sameDecisions(t, w.State(), d.watch.State(), f)
	})
}

// Revocations written while an edge reads the snapshot are applied: they
// come after the cut.
func TestRevocationDuringSnapshotLoadIsApplied(t *testing.T) {
	ns, d, f := populatedDaemon(t, "l", 30000)
	res := d.snapshot(t)
	w, _ := d.startEdge(t, natsedge.Config{URLs: []string{ns.url()}, ReplicaID: "during"})
	for i := 0; i < 50; i++ {
		d.putRaw(t, edgestate.PrefixRevokeSession+sid("during", i), []byte(revokeValue()))
		f.sids = append(f.sids, sid("during", i))
	}
	d.waitEdgeSynced(t, w)
	for i := 0; i < 50; i++ {
		if !revoked(w, sid("during", i)) {
			t.Fatalf("revocation %d written during the snapshot load was lost", i)
		}
	}
	if w.Stats().SnapshotSeq != res.Seq {
		t.Fatalf("edge stats %+v", w.Stats())
	}
	sameDecisions(t, w.State(), d.watch.State(), f)
}

// The daemon's periodic writer (serve's maintenance tick) through Tick: a
// first snapshot once enough facts are held, none again within the
// interval, none from a second replica racing it.
func TestSnapshotWriterTickAcrossReplicas(t *testing.T) {
	ns, d, f := populatedDaemon(t, "t", 2500)
	d.caughtUp(t)
	ctx := context.Background()
	// A second daemon replica: same bucket and anchor, its own watcher.
	w2, err := edgepub.Follow(ctx, d.wr.js, bucket, d.anchors, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	<-w2.Synced()
	waitFor(t, "replica 2 caught up", 30*time.Second, func() bool { return w2.State().LastSeq() >= d.watch.State().LastSeq() })
	other := d.pub.NewSnapshotWriter(w2, edgepub.SnapshotOptions{})
	wrote1, err1 := d.snap.Tick(ctx)
	wrote2, err2 := other.Tick(ctx)
	if err1 != nil || err2 != nil || !wrote1 || wrote2 {
		t.Fatalf("ticks: %v %v / %v %v; want the first to write and the second to find it recent", wrote1, err1, wrote2, err2)
	}
	if wrote, err := d.snap.Tick(ctx); wrote || err != nil {
		t.Fatalf("a second tick within the interval wrote: %v %v", wrote, err)
	}
	w := d.edgeSynced(t, ns, "tick")
	if w.Stats().SnapshotSeq == 0 {
		t.Fatalf("edge stats %+v", w.Stats())
	}
	sameDecisions(t, w.State(), d.watch.State(), f)
}

// The snapshot needs no permission beyond natsedge.EdgePermissions: its
// consumer is one of the edge's named slots on the same stream.
func TestSnapshotLoadsWithEdgePermissionsOnly(t *testing.T) {
	ns := secureServer(t)
	wr := newWriter(t, ns.url(), nats.UserInfo(daemonUser, daemonPass))
	d := startDaemonSide(t, wr)
	f := &facts{}
	d.populate(t, f, "perm", 3000)
	res := d.snapshot(t)
	w, logs := d.startEdge(t, natsedge.Config{URLs: []string{ns.url()}, User: "a", Password: edgeAPass})
	d.waitEdgeSynced(t, w)
	if st := w.Stats(); st.SnapshotSeq != res.Seq || strings.Contains(logs.String(), "refused an operation") {
		t.Fatalf("stats %+v log:\n%s", st, logs)
	}
	sameDecisions(t, w.State(), d.watch.State(), f)
}

// Attack: genuine chunks saved from a bucket that was deleted and created
// again (its sequences restarted) and put into the new one would make the
// edge skip the new bucket's facts up to the old cut: refused.
func TestSnapshotFromADeletedBucketRefused(t *testing.T) {
	ns, d, _ := populatedDaemon(t, "gone", 3000)
	res := d.snapshot(t)
	saved := d.chunkValues(t, res.Chunks)
	ctx := context.Background()
	if err := d.wr.js.DeleteKeyValue(ctx, bucket); err != nil {
		t.Fatal(err)
	}
	wr2 := newWriter(t, ns.url())
	for i := 0; i < 20; i++ {
		wr2.put(t, edgestate.PrefixRevokeSession+sid("new", i), revokeValue())
	}
	for i, v := range saved {
		wr2.put(t, edgestate.SnapshotKey(i), string(v))
	}
	w, _ := d.startEdge(t, natsedge.Config{URLs: []string{ns.url()}, ReplicaID: "recreated"})
	waitFor(t, "edge synced", 30*time.Second, func() bool { return w.State().Synced() })
	if st := w.Stats(); st.SnapshotSeq != 0 || st.SnapshotRefused != uint64(len(saved)) {
		t.Fatalf("stats %+v: chunks of the deleted bucket were used", st)
	}
	for i := 0; i < 20; i++ {
		if !revoked(w, sid("new", i)) {
			t.Fatalf("revocation %d of the new bucket skipped", i)
		}
	}
}
