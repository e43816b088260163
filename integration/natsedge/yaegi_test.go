package natsedge_test

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/traefik/yaegi/interp"
	"github.com/traefik/yaegi/stdlib"

	"github.com/edgepass/edgepass/integration/harness"
	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/natsedge"
	"github.com/edgepass/edgepass/plugin/token"
)

// edgeProgram drives the interpreted natsedge package. Its functions take
// and return only native types so the test can call them.
const edgeProgram = `
import (
	"encoding/json"
	"strings"
	"time"

	"github.com/edgepass/edgepass/plugin/natsedge"
	"github.com/edgepass/edgepass/plugin/token"
)

var edges = map[string]*natsedge.Watcher{}

func EdgeStart(name, url, seed, caFile string, idleHeartbeatMs int64) string {
	w, err := natsedge.Shared(natsedge.Config{
		URLs:          []string{url},
		ReplicaID:     "yaegi-" + name,
		NKeySeed:      seed,
		CAFile:        caFile,
		TLSServerName: "nats.test",
		IdleHeartbeat: time.Duration(idleHeartbeatMs) * time.Millisecond,
		Logf:          func(string, ...any) {},
	})
	if err != nil {
		return err.Error()
	}
	edges[name] = w
	return ""
}

func EdgeStartAs(name, url, user, passwordFile, anchors string, crossCheckMs int64) string {
	w, err := natsedge.Shared(natsedge.Config{
		URLs:               []string{url},
		ReplicaID:          "yaegi-" + name,
		User:               user,
		PasswordFile:       passwordFile,
		TrustAnchors:       []string{anchors},
		CrossCheckInterval: time.Duration(crossCheckMs) * time.Millisecond,
		Logf:               func(string, ...any) {},
	})
	if err != nil {
		return err.Error()
	}
	edges[name] = w
	return ""
}

func EdgeHasKeys(name string) bool {
	return edges[name].State().Keys() != nil
}

func EdgeRevoked(name, sid string) bool {
	return edges[name].State().Revoked(sid, "", 0, time.Now())
}

func EdgeSynced(name string) bool {
	return edges[name].State().Synced()
}

func EdgeGroups(name, subjectKey string, iat int64) string {
	g, ok := edges[name].State().GroupsOverride(subjectKey, iat)
	if !ok {
		return "-"
	}
	return strings.Join(g, ",")
}

func EdgeUserRevoked(name, subjectKey string, iat int64) bool {
	return edges[name].State().UserRevoked(subjectKey, iat, time.Now())
}

// EdgeStats hands the edge's counters over as JSON: {"watcher":
// natsedge.Stats, "state": edgestate.Stats}.
func EdgeStats(name string) string {
	w := edges[name]
	b, err := json.Marshal(map[string]any{"watcher": w.Stats(), "state": w.State().Stats()})
	if err != nil {
		return err.Error()
	}
	return string(b)
}

func EdgeClose(name string) {
	edges[name].Close()
	delete(edges, name)
}
`

// yaegiEdge is the interpreted program's API.
type yaegiEdge struct {
	start     func(name, url, seed, caFile string, idleHeartbeatMs int64) string
	startAs   func(name, url, user, passwordFile, anchors string, crossCheckMs int64) string
	hasKeys   func(name string) bool
	revoked   func(name, sid string) bool
	groups    func(name, subjectKey string, iat int64) string
	userRev   func(name, subjectKey string, iat int64) bool
	synced    func(name string) bool
	statsJSON func(name string) string
	close     func(name string)
}

// edgeStats are an edge's counters: its watcher's and its state's.
type edgeStats struct {
	Watcher natsedge.Stats  `json:"watcher"`
	State   edgestate.Stats `json:"state"`
}

// stats returns the counters of the interpreted edge name.
func (y *yaegiEdge) stats(t testing.TB, name string) edgeStats {
	t.Helper()
	var st edgeStats
	if s := y.statsJSON(name); json.Unmarshal([]byte(s), &st) != nil {
		t.Fatalf("counters of edge %s under yaegi: %s", name, s)
	}
	return st
}

// loadUnderYaegi interprets the plugin tree with yaegi v0.16.1 and only the
// standard library symbols (no unsafe), as Traefik runs plugins.
func loadUnderYaegi(t testing.TB) *yaegiEdge {
	t.Helper()
	i := interp.New(interp.Options{GoPath: copyPluginTree(t), Env: os.Environ()})
	if err := i.Use(stdlib.Symbols); err != nil {
		t.Fatal(err)
	}
	if _, err := i.Eval(edgeProgram); err != nil {
		t.Fatalf("load natsedge under yaegi: %v", err)
	}
	fn := func(name string) any {
		v, err := i.Eval(name)
		if err != nil {
			t.Fatalf("eval %s: %v", name, err)
		}
		return v.Interface()
	}
	return &yaegiEdge{
		start:     fn("EdgeStart").(func(string, string, string, string, int64) string),
		startAs:   fn("EdgeStartAs").(func(string, string, string, string, string, int64) string),
		hasKeys:   fn("EdgeHasKeys").(func(string) bool),
		revoked:   fn("EdgeRevoked").(func(string, string) bool),
		groups:    fn("EdgeGroups").(func(string, string, int64) string),
		userRev:   fn("EdgeUserRevoked").(func(string, string, int64) bool),
		synced:    fn("EdgeSynced").(func(string) bool),
		statsJSON: fn("EdgeStats").(func(string) string),
		close:     fn("EdgeClose").(func(string)),
	}
}

// startEdge starts the interpreted edge name (EdgeStart) and closes it at
// the end of the test.
func (y *yaegiEdge) startEdge(t testing.TB, name, url, seed, caFile string, idleHeartbeatMs int64) {
	t.Helper()
	if msg := y.start(name, url, seed, caFile, idleHeartbeatMs); msg != "" {
		t.Fatalf("start edge %s under yaegi: %s", name, msg)
	}
	t.Cleanup(func() { y.close(name) })
}

// startEdgeAs is startEdge with a user, a password file and trust anchors
// (EdgeStartAs).
func (y *yaegiEdge) startEdgeAs(t testing.TB, name, url, user, passwordFile, anchors string, crossCheckMs int64) {
	t.Helper()
	if msg := y.startAs(name, url, user, passwordFile, anchors, crossCheckMs); msg != "" {
		t.Fatalf("start edge %s under yaegi: %s", name, msg)
	}
	t.Cleanup(func() { y.close(name) })
}

// copyPluginTree lays the module out as Traefik does, in a GOPATH of its own.
func copyPluginTree(t testing.TB) string {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	goPath := t.TempDir()
	if err := harness.CopyPluginTo(root, goPath); err != nil {
		t.Fatal(err)
	}
	return goPath
}

// TestUnderYaegi runs the client the way Traefik does, interpreted, through
// replay, live updates, junk, flow control, a lost consumer, a server restart
// and NKey auth over TLS.
func TestUnderYaegi(t *testing.T) {
	y := loadUnderYaegi(t)

	t.Run("replay live and junk", func(t *testing.T) {
		ns := startServer(t, nil)
		wr := newWriter(t, ns.url())
		wr.put(t, "revoke.session.y1", revokeValue())
		wr.put(t, "revoke.session.y2", `{"exp":`)
		beats, err := wr.nc.SubscribeSync(natsedge.HeartbeatWildcard(bucket))
		if err != nil {
			t.Fatal(err)
		}
		y.startEdge(t, "basic", ns.url(), "", "", 0)
		waitFor(t, "replay under yaegi", 20*time.Second, func() bool { return y.synced("basic") && y.revoked("basic", "y1") })
		if st := y.stats(t, "basic").State; st.LastSeq != 2 || st.Rejected != 1 {
			t.Fatalf("seq %d rejected %d", st.LastSeq, st.Rejected)
		}
		hb, err := beats.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{`"replica":"yaegi-basic"`, `"synced":true`, `"seq":2`, `"revokedSessions":1`, `"rejected":1`} {
			if !strings.Contains(string(hb.Data), want) {
				t.Fatalf("heartbeat %s lacks %s", hb.Data, want)
			}
		}
		wr.put(t, "revoke.session.y3", revokeValue())
		waitFor(t, "live revocation under yaegi", 20*time.Second, func() bool { return y.revoked("basic", "y3") })
		// Propagation through the interpreted client (logged, not asserted).
		lat := make([]time.Duration, 0, 300)
		for i := 0; i < 300; i++ {
			sid := fmt.Sprintf("yl-%d", i)
			start := time.Now()
			wr.put(t, "revoke.session."+sid, revokeValue())
			waitFor(t, "live revocation", 10*time.Second, func() bool { return y.revoked("basic", sid) })
			lat = append(lat, time.Since(start))
		}
		t.Logf("yaegi: propagation kv.Put -> edge refuses, 300 revocations: p50 %s p99 %s", percentile(lat, 0.5), percentile(lat, 0.99))
		if msg := y.start("basic", ns.url(), "", "", 0); msg != "" || ns.edgeConns(t) != 1 {
			t.Fatalf("a second Shared call under yaegi opened another connection (%q, %d)", msg, ns.edgeConns(t))
		}
	})

	t.Run("bucket created after the edge started", func(t *testing.T) {
		ns := startServer(t, nil)
		y.startEdge(t, "late", ns.url(), "", "", 0)
		time.Sleep(300 * time.Millisecond) // at least one "stream not found" answer
		wr := newWriter(t, ns.url())
		wr.put(t, "revoke.session.l1", revokeValue())
		waitFor(t, "bucket followed under yaegi", 20*time.Second, func() bool { return y.revoked("late", "l1") })
	})

	t.Run("flow control on a large replay", func(t *testing.T) {
		ns := startServer(t, nil)
		wr := newWriter(t, ns.url())
		// ~2 MB: the server asks for flow control every 1 MB.
		const n = 4000
		bulkRevoke(t, wr, "y", n, 400)
		start := time.Now()
		y.startEdge(t, "fc", ns.url(), "", "", 0)
		waitFor(t, "replay under yaegi", 60*time.Second, func() bool { return y.synced("fc") && y.stats(t, "fc").State.Sessions == n })
		t.Logf("yaegi: replayed %d revocations in %s", n, time.Since(start).Round(time.Millisecond))
		if y.stats(t, "fc").Watcher.FlowControls == 0 {
			t.Fatal("no flow control answered")
		}
	})

	t.Run("lost consumer and server restart", func(t *testing.T) {
		ns := startServer(t, nil)
		wr := newWriter(t, ns.url())
		wr.put(t, "revoke.session.r1", revokeValue())
		y.startEdge(t, "restart", ns.url(), "", "", 200)
		waitFor(t, "replay", 20*time.Second, func() bool { return y.synced("restart") && y.revoked("restart", "r1") })

		wr.deleteConsumers(t)
		wr.put(t, "revoke.session.r2", revokeValue())
		waitFor(t, "resync under yaegi", 20*time.Second, func() bool {
			return y.revoked("restart", "r2") && y.stats(t, "restart").Watcher.Resyncs >= 1
		})

		wr.nc.Close()
		ns.stop()
		ns.start()
		wr2 := newWriter(t, ns.url())
		wr2.put(t, "revoke.session.r3", revokeValue())
		waitFor(t, "catch-up after restart under yaegi", 20*time.Second, func() bool { return y.revoked("restart", "r3") })
		if y.stats(t, "restart").Watcher.Connects < 2 {
			t.Fatal("no reconnect counted")
		}
	})

	t.Run("edge permissions, password file, signed keys and a hijack", func(t *testing.T) {
		ns := startServer(t, func(o *server.Options) {
			o.Users = []*server.User{
				{Username: daemonUser, Password: daemonPass},
				{Username: "y", Password: "y-pw", Permissions: edgePermissions("y")},
			}
		})
		wr := newWriter(t, ns.url(), nats.UserInfo(daemonUser, daemonPass))
		anchor, anchorText := newAnchor(t)
		pub, _, _ := ed25519.GenerateKey(nil)
		jwks, _ := token.NewKeySet(token.Key{ID: "k1", Public: pub}).MarshalJWKS()
		wr.put(t, "keys", signedKeys(t, anchor, jwks))
		pwFile := filepath.Join(t.TempDir(), "y.password")
		if err := os.WriteFile(pwFile, []byte("y-pw\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		y.startEdgeAs(t, "perm", ns.url(), "y", pwFile, anchorText, 1000)
		waitFor(t, "synced under yaegi", 20*time.Second, func() bool { return y.synced("perm") && y.hasKeys("perm") && y.stats(t, "perm").Watcher.Consumer != "" })
		time.Sleep(1500 * time.Millisecond)
		hijack(t, wr, y.stats(t, "perm").Watcher.Consumer)
		wr.put(t, "revoke.session.h1", revokeValue())
		waitFor(t, "hijack detected under yaegi", 10*time.Second, func() bool { return y.stats(t, "perm").Watcher.Hijacks >= 1 })
		waitFor(t, "revocation after the hijack under yaegi", 20*time.Second, func() bool { return y.revoked("perm", "h1") })
	})

	t.Run("snapshot and the compact session map", func(t *testing.T) {
		ns, d, f := populatedDaemon(t, "ys", 5000)
		res := d.snapshot(t)
		d.populate(t, f, "yt", 100) // after the cut
		y.startEdgeAs(t, "snap", ns.url(), "", "", d.anchorText, 0)
		// Written while the edge loads the snapshot.
		d.putRaw(t, edgestate.PrefixRevokeSession+sid("ydur", 1), []byte(revokeValue()))
		last := d.streamLast(t)
		waitFor(t, "synced from the snapshot under yaegi", 60*time.Second, func() bool {
			return y.synced("snap") && y.stats(t, "snap").State.LastSeq >= last
		})
		d.caughtUp(t)
		st := y.stats(t, "snap")
		if st.Watcher.SnapshotSeq != res.Seq || st.Watcher.SnapshotChunks != uint64(res.Chunks) || st.State.Rejected != 0 {
			t.Fatalf("snapshot seq %d chunks %d rejected %d, want %d %d 0", st.Watcher.SnapshotSeq, st.Watcher.SnapshotChunks, st.State.Rejected, res.Seq, res.Chunks)
		}
		if st.Watcher.Delivered > uint64(2*res.Chunks+300) {
			t.Fatalf("%d entries delivered: the snapshot did not spare the replay", st.Watcher.Delivered)
		}
		ref := d.watch.State()
		now := time.Now()
		f.sids = append(f.sids, sid("ydur", 1))
		for i, s := range f.sids {
			if i%7 != 0 && i < len(f.sids)-120 {
				continue // a sample of the bulk, every fact after the cut
			}
			if y.revoked("snap", s) != ref.SessionRevoked(s, now) {
				t.Fatalf("session %s: yaegi edge %v, full replay %v", s, y.revoked("snap", s), ref.SessionRevoked(s, now))
			}
		}
		if got := y.stats(t, "snap").State.Sessions; got != ref.Stats().Sessions {
			t.Fatalf("sessions %d, full replay %d", got, ref.Stats().Sessions)
		}
		for _, sub := range f.subjects {
			sk := token.SubjectKey(sub)
			want := "-"
			if g, ok := ref.GroupsOverride(sk, 1); ok {
				want = strings.Join(g, ",")
			}
			if got := y.groups("snap", sk, 1); got != want {
				t.Fatalf("groups of %s: yaegi edge %q, full replay %q", sub, got, want)
			}
			if y.userRev("snap", sk, 1) != ref.UserRevoked(sk, 1, now) {
				t.Fatalf("user %s differs", sub)
			}
		}
		if !y.hasKeys("snap") {
			t.Fatal("keys fact not applied")
		}
	})

	t.Run("direct-get bridge while no consumer can be created", func(t *testing.T) {
		ns := startServer(t, nil)
		wr := newWriter(t, ns.url())
		wr.put(t, "revoke.session.b1", revokeValue())
		y.startEdge(t, "bridge", ns.url(), "", "", 200)
		waitFor(t, "synced under yaegi", 20*time.Second, func() bool { return y.synced("bridge") && y.stats(t, "bridge").Watcher.Consumer != "" })
		// The stream refuses another consumer (max_consumers 1, held by
		// someone else) and the edge's is gone: the edge cannot create one,
		// as while a cluster elects its metadata leader, and follows the
		// stream with direct gets.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		stream := wr.edgeStream(t, ctx)
		limit := func(n int) {
			t.Helper()
			cfg := stream.CachedInfo().Config
			cfg.MaxConsumers = n
			if _, err := wr.js.UpdateStream(ctx, cfg); err != nil {
				t.Fatalf("max_consumers %d: %v", n, err)
			}
		}
		limit(1)
		waitFor(t, "the one consumer the stream allows taken", 20*time.Second, func() bool {
			if _, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{Name: "blocker", AckPolicy: jetstream.AckNonePolicy}); err == nil {
				return true
			}
			wr.deleteConsumers(t) // the edge's (it recreates it at once)
			return false
		})
		waitFor(t, "the lost consumer noticed under yaegi", 10*time.Second, func() bool { return !y.synced("bridge") && y.stats(t, "bridge").Watcher.Consumer == "" })
		for i := 2; i <= 4; i++ {
			sid := fmt.Sprintf("b%d", i)
			wr.put(t, "revoke.session."+sid, revokeValue())
			waitFor(t, "revocation through direct gets under yaegi", 10*time.Second, func() bool { return y.revoked("bridge", sid) })
		}
		if st := y.stats(t, "bridge").Watcher; y.synced("bridge") || st.Consumer != "" || st.DirectEntries < 3 {
			t.Fatalf("synced %v, consumer %q, %d entries through direct gets", y.synced("bridge"), st.Consumer, st.DirectEntries)
		}
		// Consumers allowed again: one, synced, and the bridge stops.
		limit(-1)
		if err := stream.DeleteConsumer(ctx, "blocker"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "a consumer again under yaegi", 20*time.Second, func() bool { return y.synced("bridge") && y.stats(t, "bridge").Watcher.Consumer != "" })
		gets := y.stats(t, "bridge").Watcher.DirectGets
		wr.put(t, "revoke.session.b5", revokeValue())
		waitFor(t, "live revocation under yaegi", 10*time.Second, func() bool { return y.revoked("bridge", "b5") })
		time.Sleep(500 * time.Millisecond)
		if st := y.stats(t, "bridge"); st.Watcher.DirectGets != gets || st.State.LastSeq != 5 || st.State.Sessions != 5 {
			t.Fatalf("direct gets %d (were %d), seq %d, sessions %d", st.Watcher.DirectGets, gets, st.State.LastSeq, st.State.Sessions)
		}
	})

	t.Run("nkey over TLS", func(t *testing.T) {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		seed, _ := kp.Seed()
		pub, _ := kp.PublicKey()
		cert, caFile := testCA(t)
		ns := startServer(t, func(o *server.Options) {
			o.TLS = true
			o.TLSTimeout = 5
			o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			o.Nkeys = []*server.NkeyUser{{Nkey: pub, Permissions: edgePermissions("edge")}}
			o.Users = []*server.User{{Username: daemonUser, Password: daemonPass}}
		})
		wr := newWriter(t, ns.url(), nats.UserInfo(daemonUser, daemonPass), nats.RootCAs(caFile))
		wr.put(t, "revoke.session.k1", revokeValue())
		y.startEdge(t, "nkey", ns.url(), string(seed), caFile, 0)
		waitFor(t, "replay over nkey+TLS under yaegi", 20*time.Second, func() bool { return y.revoked("nkey", "k1") })
		wr.put(t, "revoke.session.k2", revokeValue())
		waitFor(t, "live over nkey+TLS under yaegi", 20*time.Second, func() bool { return y.revoked("nkey", "k2") })
	})
}

// BenchmarkYaegiReplay reports how fast the interpreted client replays a
// bucket: what a Traefik replica pays to catch up at start.
func BenchmarkYaegiReplay(b *testing.B) {
	const n = 20000
	ns := startServer(b, nil)
	wr := newWriter(b, ns.url())
	bulkRevoke(b, wr, "yb", n, 0)
	y := loadUnderYaegi(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("bench-%d", i)
		start := time.Now()
		if msg := y.start(name, ns.url(), "", "", 0); msg != "" {
			b.Fatal(msg)
		}
		waitFor(b, "replay under yaegi", 120*time.Second, func() bool { return y.synced(name) && y.stats(b, name).State.Sessions == n })
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "entries/s")
		y.close(name)
	}
}
