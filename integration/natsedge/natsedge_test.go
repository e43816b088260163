package natsedge_test

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/plugin/natsedge"
	"github.com/edgepass/edgepass/plugin/token"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

func TestReplayAtStart(t *testing.T) {
	ns := startServer(t, nil)
	wr := newWriter(t, ns.url())
	anchor, anchorText := newAnchor(t)
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := token.NewKeySet(token.Key{ID: "k1", Public: pub}).MarshalJWKS()
	if err != nil {
		t.Fatal(err)
	}
	sk := token.SubjectKey("alice")
	wr.put(t, "revoke.session.sidA", revokeValue())
	wr.put(t, "revoke.session.sidB", revokeValue())
	wr.put(t, "groups."+sk, signedGroups(t, anchor, sk, 2000, "admins", "ops"))
	wr.put(t, "revoke.user."+token.SubjectKey("mallory"), `{"before":1500,"exp":0}`)
	wr.put(t, "keys", signedKeys(t, anchor, jwks))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Attack: deleting a revocation does not lift it at the edge.
	if err := wr.kv.Delete(ctx, "revoke.session.sidB"); err != nil {
		t.Fatal(err)
	}

	w, _ := watch(t, natsedge.Config{URLs: []string{ns.url()}, TrustAnchors: []string{anchorText}})
	waitFor(t, "replay", 10*time.Second, func() bool { return w.State().Synced() })
	st := w.State()
	if !revoked(w, "sidA") {
		t.Fatal("sidA not revoked")
	}
	if g, ok := st.GroupsOverride(sk, 1000); !ok || strings.Join(g, ",") != "admins,ops" {
		t.Fatalf("groups override = %v %v", g, ok)
	}
	if !st.Revoked("", token.SubjectKey("mallory"), 1400, time.Now()) || st.Revoked("", token.SubjectKey("mallory"), 1600, time.Now()) {
		t.Fatal("user revocation not applied by iat")
	}
	if ks := st.Keys(); ks == nil {
		t.Fatal("keys not received")
	} else if k, ok := ks.Lookup("k1"); !ok || !k.Equal(pub) {
		t.Fatal("key k1 missing or different")
	}
	if ns.edgeConns(t) != 1 {
		t.Fatalf("edge connections = %d", ns.edgeConns(t))
	}
}

// TestLivePropagation measures the time from kv.Put to the edge refusing the
// session, over 1,000 revocations (reported, not asserted beyond sanity).
func TestLivePropagation(t *testing.T) {
	ns := startServer(t, nil)
	wr := newWriter(t, ns.url())
	w, _ := watch(t, natsedge.Config{URLs: []string{ns.url()}})
	waitFor(t, "sync", 10*time.Second, func() bool { return w.State().Synced() })
	const n = 1000
	lat := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		sid := fmt.Sprintf("live-%04d", i)
		start := time.Now()
		wr.put(t, "revoke.session."+sid, revokeValue())
		for !revoked(w, sid) {
			if time.Since(start) > 5*time.Second {
				t.Fatalf("revocation %d not applied after 5s", i)
			}
			runtime.Gosched()
		}
		lat = append(lat, time.Since(start))
	}
	p50, p99 := percentile(lat, 0.50), percentile(lat, 0.99)
	t.Logf("propagation kv.Put -> edge refuses, %d revocations: p50 %s p99 %s max %s", n, p50, p99, percentile(lat, 1))
	if p99 > 2*time.Second {
		t.Fatalf("p99 %s is beyond any reasonable bound", p99)
	}
}

// TestCatchUpAfterServerRestart stops the server, writes a revocation while
// the edge is cut off, and restarts on the same port and store.
func TestCatchUpAfterServerRestart(t *testing.T) {
	ns := startServer(t, nil)
	wr := newWriter(t, ns.url())
	wr.put(t, "revoke.session.before", revokeValue())
	w, _ := watch(t, natsedge.Config{URLs: []string{ns.url()}})
	waitFor(t, "sync", 10*time.Second, func() bool { return revoked(w, "before") && w.State().Synced() })
	wr.nc.Close()
	ns.stop()
	waitFor(t, "disconnect", 10*time.Second, func() bool { return !w.Stats().Connected })

	// Write while the edge cannot connect: the same store on another port.
	side := &natsServer{t: t, opts: ns.opts}
	side.opts.Port = -1
	side.start()
	sideURL := fmt.Sprintf("nats://%s", side.srv.Addr().String())
	wr2 := newWriter(t, sideURL)
	wr2.put(t, "revoke.session.during", revokeValue())
	wr2.nc.Close()
	side.stop()
	if revoked(w, "during") {
		t.Fatal("applied before reconnecting?")
	}

	ns.start()
	waitFor(t, "catch up after restart", 15*time.Second, func() bool { return revoked(w, "during") })
	if !revoked(w, "before") {
		t.Fatal("lost state across the reconnect")
	}
	waitFor(t, "synced again", 10*time.Second, func() bool { return w.State().Synced() })
	wr3 := newWriter(t, ns.url())
	wr3.put(t, "revoke.session.after", revokeValue())
	waitFor(t, "live after restart", 10*time.Second, func() bool { return revoked(w, "after") })
	if st := w.Stats(); st.Connects < 2 || st.Disconnects < 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestDeletedConsumerForcesResync removes the edge's consumer behind its
// back; the silent heartbeat makes the edge recreate it from where it was.
func TestDeletedConsumerForcesResync(t *testing.T) {
	ns := startServer(t, nil)
	wr := newWriter(t, ns.url())
	wr.put(t, "revoke.session.one", revokeValue())
	w, _ := watch(t, natsedge.Config{URLs: []string{ns.url()}, IdleHeartbeat: 200 * time.Millisecond})
	waitFor(t, "sync", 10*time.Second, func() bool { return revoked(w, "one") && w.State().Synced() })

	if names := wr.deleteConsumers(t); len(names) != 1 {
		t.Fatalf("stream had consumers %v, want the edge's one", names)
	}
	// Written while the edge has no consumer (the direct-get bridge may
	// bring it before the stall is declared).
	wr.put(t, "revoke.session.two", revokeValue())
	waitFor(t, "resync", 10*time.Second, func() bool {
		return revoked(w, "two") && w.Stats().Resyncs >= 1 && w.State().Synced()
	})
	if st := w.Stats(); st.Stalls < 1 || st.Disconnects != 0 {
		t.Fatalf("stats %+v", st)
	}
	wr.put(t, "revoke.session.three", revokeValue())
	waitFor(t, "live through the new consumer", 10*time.Second, func() bool { return revoked(w, "three") })
	if !revoked(w, "one") {
		t.Fatal("lost state across the resync")
	}
}

func TestSharedKeepsOneConnection(t *testing.T) {
	ns := startServer(t, nil)
	newWriter(t, ns.url())
	cfg := natsedge.Config{URLs: []string{ns.url()}, ReplicaID: "shared"}
	w, _ := watch(t, cfg)
	waitFor(t, "sync", 10*time.Second, func() bool { return w.State().Synced() })
	runtime.GC()
	before := runtime.NumGoroutine()
	for i := 0; i < 10000; i++ {
		w2, err := natsedge.Shared(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if w2 != w {
			t.Fatalf("Shared call %d returned a different watcher", i)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if after := runtime.NumGoroutine(); after > before+2 {
		t.Fatalf("goroutines %d -> %d over 10,000 Shared calls", before, after)
	}
	if n := ns.edgeConns(t); n != 1 {
		t.Fatalf("server sees %d edge connections, want 1", n)
	}
}

// TestMalformedValuesAreIgnoredAndCounted writes junk into the bucket; the
// edge skips it, counts it and keeps following.
func TestMalformedValuesAreIgnoredAndCounted(t *testing.T) {
	ns := startServer(t, nil)
	wr := newWriter(t, ns.url())
	w, _ := watch(t, natsedge.Config{URLs: []string{ns.url()}})
	waitFor(t, "sync", 10*time.Second, func() bool { return w.State().Synced() })
	wr.put(t, "revoke.session.bad", `{"exp":`)
	wr.put(t, "no.such.kind", `{"exp":1}`)
	wr.put(t, "revoke.user.x", `[]`)
	wr.put(t, "keys", `{"keys":"nope"}`)
	// Near the server's max_payload (1 MiB by default).
	wr.put(t, "revoke.session.huge", strings.Repeat("x", 1<<20-512))
	wr.put(t, "revoke.session.good", revokeValue())
	waitFor(t, "good revocation", 10*time.Second, func() bool { return revoked(w, "good") })
	if got := w.State().Stats().Rejected; got != 5 {
		t.Fatalf("rejected = %d, want 5", got)
	}
	if revoked(w, "bad") || revoked(w, "huge") || w.State().Keys() != nil {
		t.Fatal("a malformed value was applied")
	}
	if st := w.Stats(); st.Disconnects != 0 || st.Resyncs != 0 {
		t.Fatalf("junk disturbed the connection: %+v", st)
	}
}

// TestHeartbeatIsPublished checks what the daemon's /api/v1/edges reads.
func TestHeartbeatIsPublished(t *testing.T) {
	ns := startServer(t, nil)
	wr := newWriter(t, ns.url())
	wr.put(t, "revoke.session.s1", revokeValue())
	sub, err := wr.nc.SubscribeSync(natsedge.HeartbeatWildcard(bucket))
	if err != nil {
		t.Fatal(err)
	}
	watch(t, natsedge.Config{URLs: []string{ns.url()}, ReplicaID: "hb-edge", EdgeName: "hb"})
	m, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != natsedge.HeartbeatSubject(bucket, "hb") {
		t.Fatalf("heartbeat on %s", m.Subject)
	}
	s := string(m.Data)
	for _, want := range []string{`"edge":"hb"`, `"replica":"hb-edge"`, `"bucket":"edgepass_edge"`, `"synced":true`, `"revokedSessions":1`, `"seq":1`} {
		if !strings.Contains(s, want) {
			t.Fatalf("heartbeat %s lacks %s", s, want)
		}
	}
}

// TestNKeyAuthWithEdgePermissions connects as an NKey user that holds only
// the edge's permissions.
func TestNKeyAuthWithEdgePermissions(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	ns := startServer(t, func(o *server.Options) {
		o.Nkeys = []*server.NkeyUser{{Nkey: pub, Permissions: edgePermissions("edge")}}
		o.Users = []*server.User{{Username: daemonUser, Password: daemonPass}}
	})
	wr := newWriter(t, ns.url(), nats.UserInfo(daemonUser, daemonPass))
	logs := followsWithItsPermissions(t, wr, natsedge.Config{URLs: []string{ns.url()}, NKeySeed: string(seed)}, "n", "nkey auth")

	// A different key is refused.
	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	if !connectRefused(t, natsedge.Config{URLs: []string{ns.url()}, NKeySeed: string(otherSeed)}, logs) {
		t.Fatal("connected with an unknown nkey")
	}
}

func TestUserPasswordAuth(t *testing.T) {
	ns := startServer(t, func(o *server.Options) {
		o.Users = []*server.User{
			{Username: daemonUser, Password: daemonPass},
			{Username: "edge", Password: "edge-pw", Permissions: edgePermissions("edge")},
		}
	})
	wr := newWriter(t, ns.url(), nats.UserInfo(daemonUser, daemonPass))
	wr.put(t, "revoke.session.u1", revokeValue())
	w, _ := watch(t, natsedge.Config{URLs: []string{ns.url()}, User: "edge", Password: "edge-pw"})
	waitFor(t, "replay over user auth", 10*time.Second, func() bool { return revoked(w, "u1") })
}

func TestTokenAuth(t *testing.T) {
	ns := startServer(t, func(o *server.Options) { o.Authorization = "edge-token" })
	wr := newWriter(t, ns.url(), nats.Token("edge-token"))
	wr.put(t, "revoke.session.t1", revokeValue())
	w, _ := watch(t, natsedge.Config{URLs: []string{ns.url()}, Token: "edge-token"})
	waitFor(t, "replay over token auth", 10*time.Second, func() bool { return revoked(w, "t1") })
}

func TestTLSWithCustomCA(t *testing.T) {
	cert, caFile := testCA(t)
	ns := startServer(t, func(o *server.Options) {
		o.TLS = true
		o.TLSTimeout = 5
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	})
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	wr := newWriter(t, ns.url(), nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	wr.put(t, "revoke.session.tls1", revokeValue())

	w, _ := watch(t, natsedge.Config{URLs: []string{ns.url()}, CAFile: caFile, TLSServerName: "nats.test"})
	waitFor(t, "replay over TLS", 10*time.Second, func() bool { return revoked(w, "tls1") })

	// Without the CA the server's certificate is not trusted.
	logs := &logSink{}
	if !connectRefused(t, natsedge.Config{URLs: []string{ns.url()}, ReplicaID: "untrusting"}, logs) || !strings.Contains(logs.String(), "TLS handshake") {
		t.Fatalf("connected to an untrusted server; log:\n%s", logs)
	}
}

// TestMissingBucketIsWaitedFor starts the edge before the daemon created the
// bucket.
func TestMissingBucketIsWaitedFor(t *testing.T) {
	ns := startServer(t, nil)
	w, logs := watch(t, natsedge.Config{URLs: []string{ns.url()}})
	waitFor(t, "connect", 10*time.Second, func() bool { return w.Stats().Connected })
	waitFor(t, "missing bucket log", 10*time.Second, func() bool { return strings.Contains(logs.String(), "does not exist yet") })
	wr := newWriter(t, ns.url())
	wr.put(t, "revoke.session.late", revokeValue())
	waitFor(t, "bucket followed once created", 20*time.Second, func() bool { return revoked(w, "late") })
	if n := strings.Count(logs.String(), "does not exist yet"); n != 1 {
		t.Fatalf("logged the missing bucket %d times", n)
	}
}
