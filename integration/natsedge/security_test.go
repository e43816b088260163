package natsedge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepass/edgepass/plugin/natsedge"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Passwords of the edge users of secureServer.
const (
	edgeAPass = "a-pw"
	edgeBPass = "b-pw"
)

// secureServer is a server where the daemon may do everything and the edges
// "a" and "b" exactly natsedge.EdgePermissions.
func secureServer(t testing.TB) *natsServer {
	return startServer(t, func(o *server.Options) {
		o.Users = []*server.User{
			{Username: daemonUser, Password: daemonPass},
			{Username: "a", Password: edgeAPass, Permissions: edgePermissions("a")},
			{Username: "b", Password: edgeBPass, Permissions: edgePermissions("b")},
		}
	})
}

// probe is a nats.go client holding an edge credential, the way an attacker
// who stole it would use it; it records the server's permission refusals.
type probe struct {
	nc   *nats.Conn
	mu   sync.Mutex
	errs []string
}

func newProbe(t testing.TB, url, user, pass string) *probe {
	t.Helper()
	p := &probe{}
	nc, err := nats.Connect(url, nats.UserInfo(user, pass), nats.Name("attacker"),
		nats.CustomInboxPrefix(natsedge.InboxPrefix(user)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			p.mu.Lock()
			p.errs = append(p.errs, err.Error())
			p.mu.Unlock()
		}))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	p.nc = nc
	return p
}

// refusedFor waits until the server reported a permissions violation for op
// ("Publish" or "Subscription") on subject.
func (p *probe) refusedFor(op, subject string) bool {
	want := fmt.Sprintf("Permissions Violation for %s to %q", op, subject)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		for _, e := range p.errs {
			if strings.Contains(e, want) {
				p.mu.Unlock()
				return true
			}
		}
		p.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	return false
}

// attempt is one thing an edge credential must not be able to do.
type attempt struct {
	name    string
	kind    string // "request", "publish", "subscribe"
	subject string
	body    string
}

// try runs a and fails the test unless the server refused it: a request
// gets no answer, a subscription receives nothing.
func (p *probe) try(t *testing.T, a attempt) {
	t.Helper()
	switch a.kind {
	case "request":
		inbox := p.nc.NewRespInbox()
		sub, err := p.nc.SubscribeSync(inbox)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		if err := p.nc.PublishRequest(a.subject, inbox, []byte(a.body)); err != nil {
			t.Fatal(err)
		}
		if !p.refusedFor("Publish", a.subject) {
			t.Errorf("%s: the server did not refuse a request to %s", a.name, a.subject)
		}
		if m, err := sub.NextMsg(200 * time.Millisecond); err == nil {
			t.Errorf("%s: %s answered: %s", a.name, a.subject, m.Data)
		}
	case "publish":
		if err := p.nc.Publish(a.subject, []byte(a.body)); err != nil {
			t.Fatal(err)
		}
		if !p.refusedFor("Publish", a.subject) {
			t.Errorf("%s: the server did not refuse a publish to %s", a.name, a.subject)
		}
	case "subscribe":
		sub, err := p.nc.SubscribeSync(a.subject)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		if !p.refusedFor("Subscription", a.subject) {
			t.Errorf("%s: the server did not refuse a subscription to %s", a.name, a.subject)
		}
	}
}

// createBucket makes a KV bucket with one entry, as the daemon's session
// and key stores are.
func createBucket(t testing.TB, wr *writer, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := wr.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: name, History: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.PutString(ctx, "secret", "refresh-token-or-private-key"); err != nil {
		t.Fatal(err)
	}
}

func consumerCreateBody(stream, name, deliver string) string {
	cfg := map[string]any{"deliver_subject": deliver, "ack_policy": "none", "deliver_policy": "all"}
	if name != "" {
		cfg["name"] = name
	}
	b, _ := json.Marshal(map[string]any{"stream_name": stream, "config": cfg})
	return string(b)
}

// TestEdgeCannotReadKeysOrSessions: an edge credential (the one every
// Traefik replica holds) reads nothing but the edge bucket's facts and
// writes nothing.
func TestEdgeCannotReadKeysOrSessions(t *testing.T) {
	ns := secureServer(t)
	wr := newWriter(t, ns.url(), nats.UserInfo(daemonUser, daemonPass))
	createBucket(t, wr, "edgepass_sessions")
	createBucket(t, wr, "edgepass_keys")
	p := newProbe(t, ns.url(), "a", edgeAPass)
	// The probe is a working edge client: what the contract grants works.
	if m, err := p.nc.Request("$JS.API.STREAM.INFO.KV_"+bucket, nil, 5*time.Second); err != nil || !strings.Contains(string(m.Data), `"last_seq"`) {
		t.Fatalf("STREAM.INFO of the edge bucket: %v", err)
	}
	// Direct gets of the edge bucket's public facts (the bridge while the
	// edge has no consumer).
	wr.put(t, "revoke.session.public", revokeValue())
	if m, err := p.nc.Request("$JS.API.DIRECT.GET.KV_"+bucket, []byte(`{"seq":1,"next_by_subj":"$KV.`+bucket+`.>"}`), 5*time.Second); err != nil || m.Header.Get("Nats-Subject") != "$KV."+bucket+".revoke.session.public" {
		t.Fatalf("direct get on the edge bucket: %v", err)
	}
	var attempts []attempt
	for _, b := range []string{"edgepass_sessions", "edgepass_keys"} {
		stream := "KV_" + b
		attempts = append(attempts,
			// Attack: replay the sessions (refresh tokens) or signing keys through a consumer.
			attempt{"ephemeral consumer on " + stream, "request", "$JS.API.CONSUMER.CREATE." + stream, consumerCreateBody(stream, "", "_EDGEPASS.a.x")},
			attempt{"named consumer on " + stream, "request", "$JS.API.CONSUMER.CREATE." + stream + ".edge_a_0", consumerCreateBody(stream, "edge_a_0", "_EDGEPASS.a.x")},
			attempt{"durable consumer on " + stream, "request", "$JS.API.CONSUMER.DURABLE.CREATE." + stream + ".edge_a_0", consumerCreateBody(stream, "", "_EDGEPASS.a.x")},
			attempt{"stream info of " + stream, "request", "$JS.API.STREAM.INFO." + stream, ""},
			// Attack: read one entry directly.
			attempt{"direct get on " + stream, "request", "$JS.API.DIRECT.GET." + stream, `{"last_by_subj":"$KV.` + b + `.secret"}`},
			attempt{"direct get by subject on " + stream, "request", "$JS.API.DIRECT.GET." + stream + ".$KV." + b + ".secret", ""},
			attempt{"message get on " + stream, "request", "$JS.API.STREAM.MSG.GET." + stream, `{"last_by_subj":"$KV.` + b + `.secret"}`},
			// Attack: watch writes as they happen.
			attempt{"core subscription to " + b, "subscribe", "$KV." + b + ".>", ""},
		)
	}
	attempts = append(attempts,
		// Attack: forge facts at every edge.
		attempt{"publish a revocation lift", "publish", "$KV." + bucket + ".revoke.session.x", `{"exp":1}`},
		attempt{"publish a key set", "publish", "$KV." + bucket + ".keys", `{"keys":[]}`},
		attempt{"direct get by subject on the edge bucket (not needed)", "request", "$JS.API.DIRECT.GET.KV_" + bucket + ".$KV." + bucket + ".keys", ""},
		attempt{"list streams", "request", "$JS.API.STREAM.LIST", ""},
		attempt{"account info", "request", "$JS.API.INFO", ""},
	)
	for _, a := range attempts {
		t.Run(a.name, func(t *testing.T) { p.try(t, a) })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if keys, err := wr.kv.ListKeys(ctx); err == nil {
		for k := range keys.Keys() {
			if k != "revoke.session.public" { // the daemon's
				t.Errorf("the edge credential wrote %s", k)
			}
		}
	}
}

// TestEdgeCannotSeeOrDisturbAnotherEdge: edge a's credential cannot find,
// read, steal or delete edge b's consumer, nor report as b.
func TestEdgeCannotSeeOrDisturbAnotherEdge(t *testing.T) {
	ns := secureServer(t)
	wr := newWriter(t, ns.url(), nats.UserInfo(daemonUser, daemonPass))
	wr.put(t, "revoke.session.before", revokeValue())
	victim, logs := watch(t, natsedge.Config{URLs: []string{ns.url()}, User: "b", Password: edgeBPass, ReplicaID: "victim"})
	waitFor(t, "victim synced", 10*time.Second, func() bool { return victim.State().Synced() && victim.Stats().Consumer != "" })
	vc := victim.Stats().Consumer
	other := natsedge.ConsumerName("b", 7)
	if other == vc {
		other = natsedge.ConsumerName("b", 6)
	}
	stream := "KV_" + bucket
	p := newProbe(t, ns.url(), "a", edgeAPass)
	attempts := []attempt{
		// Attack: sniff b's inbox (its consumer's deliveries and API replies).
		{"subscribe b's inbox", "subscribe", natsedge.InboxPrefix("b") + ".>", ""},
		{"subscribe every inbox", "subscribe", "_INBOX.>", ""},
		{"subscribe every edge inbox", "subscribe", "_EDGEPASS.*.>", ""},
		{"subscribe everything", "subscribe", ">", ""},
		// Attack: find b's consumer and its deliver subject.
		{"consumer info of b's consumer", "request", "$JS.API.CONSUMER.INFO." + stream + "." + vc, ""},
		{"consumer list", "request", "$JS.API.CONSUMER.LIST." + stream, ""},
		{"consumer names", "request", "$JS.API.CONSUMER.NAMES." + stream, ""},
		// Attack: replace or remove b's consumer.
		{"named create over b's consumer", "request", "$JS.API.CONSUMER.CREATE." + stream + "." + vc, consumerCreateBody(stream, vc, "_EDGEPASS.a.steal")},
		{"named create in b's free slot", "request", "$JS.API.CONSUMER.CREATE." + stream + "." + other, consumerCreateBody(stream, other, "_EDGEPASS.a.steal")},
		{"legacy create naming b's consumer", "request", "$JS.API.CONSUMER.CREATE." + stream, consumerCreateBody(stream, vc, "_EDGEPASS.a.steal")},
		{"durable create naming b's consumer", "request", "$JS.API.CONSUMER.DURABLE.CREATE." + stream + "." + vc, consumerCreateBody(stream, "", "_EDGEPASS.a.steal")},
		{"delete b's consumer", "request", "$JS.API.CONSUMER.DELETE." + stream + "." + vc, ""},
		{"answer b's flow control", "publish", "$JS.FC." + stream + "." + vc + ".x", ""},
		// Attack: report as b (the daemon would show b as synced).
		{"publish b's heartbeat", "publish", natsedge.HeartbeatSubject(bucket, "b"), `{"edge":"b","replica":"victim","synced":true}`},
	}
	for _, a := range attempts {
		t.Run(a.name, func(t *testing.T) { p.try(t, a) })
	}
	wr.put(t, "revoke.session.after", revokeValue())
	waitFor(t, "victim still applies facts", 10*time.Second, func() bool { return revoked(victim, "after") })
	if st := victim.Stats(); st.Resyncs != 0 || st.Hijacks != 0 || st.Consumer != vc || st.Disconnects != 0 {
		t.Fatalf("the victim was disturbed: %+v\n%s", st, logs)
	}
}

// hijack is the attack of the security issue, with full account rights (the
// daemon's credential): look the victim's consumer up, delete it, and point
// a consumer that only sends heartbeats at the victim's deliver subject.
func hijack(t testing.TB, wr *writer, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream := wr.edgeStream(t, ctx)
	m, err := wr.nc.Request("$JS.API.CONSUMER.INFO.KV_"+bucket+"."+name, nil, 5*time.Second)
	if err != nil {
		t.Fatalf("look up the victim's consumer %s: %v", name, err)
	}
	var info struct {
		Config struct {
			DeliverSubject string `json:"deliver_subject"`
		} `json:"config"`
	}
	if err := json.Unmarshal(m.Data, &info); err != nil {
		t.Fatal(err)
	}
	deliver := info.Config.DeliverSubject
	if deliver == "" {
		t.Fatalf("victim's consumer has no deliver subject: %s", m.Data)
	}
	if err := stream.DeleteConsumer(ctx, name); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{
		"stream_name": "KV_" + bucket,
		"config": map[string]any{
			"name": name, "deliver_subject": deliver, "deliver_policy": "new", "ack_policy": "none",
			"filter_subject": "$KV." + bucket + ".nothing.here", "idle_heartbeat": int64(200 * time.Millisecond),
			"flow_control": true, "mem_storage": true,
		},
		"action": "create",
	})
	m, err = wr.nc.Request("$JS.API.CONSUMER.CREATE.KV_"+bucket+"."+name, body, 5*time.Second)
	if err != nil || strings.Contains(string(m.Data), `"error"`) {
		t.Fatalf("create the heartbeat-only consumer: %v %s", err, m.Data)
	}
}

// TestHijackedConsumerIsDetectedAndResynced: the attack of the security
// issue against the real server. The victim must notice within two
// cross-check intervals, stop claiming to be synced, and apply a revocation
// written after the hijack.
func TestHijackedConsumerIsDetectedAndResynced(t *testing.T) {
	const interval = time.Second
	tests := []struct {
		name    string
		entries int // entries the victim received before the attack
	}{
		// The replacement's heartbeat says it delivered less than the edge
		// received: caught at its first heartbeat.
		{"edge that received entries", 2},
		// Nothing distinguishes the replacement's heartbeats: the stream
		// moving on without a delivery gives it away.
		{"quiet edge", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := startServer(t, func(o *server.Options) {
				o.Users = []*server.User{
					{Username: daemonUser, Password: daemonPass},
					{Username: "v", Password: "v-pw", Permissions: edgePermissions("v")},
				}
			})
			wr := newWriter(t, ns.url(), nats.UserInfo(daemonUser, daemonPass))
			for i := 0; i < tt.entries; i++ {
				wr.put(t, fmt.Sprintf("revoke.session.old%d", i), revokeValue())
			}
			w, logs := watch(t, natsedge.Config{URLs: []string{ns.url()}, User: "v", Password: "v-pw", CrossCheckInterval: interval})
			waitFor(t, "synced", 10*time.Second, func() bool { return w.State().Synced() && w.Stats().Consumer != "" })
			time.Sleep(1500 * time.Millisecond) // a cross-check in step first
			hijack(t, wr, w.Stats().Consumer)
			wrote := time.Now()
			wr.put(t, "revoke.session.after", revokeValue())
			waitFor(t, "hijack detected", 2*interval+time.Second, func() bool { return w.Stats().Hijacks >= 1 })
			took := time.Since(wrote)
			t.Logf("hijack detected %s after the revocation was written", took.Round(time.Millisecond))
			if took > 2*interval+500*time.Millisecond {
				t.Fatalf("detected after %s, want within 2 x %s", took, interval)
			}
			waitFor(t, "revocation applied after the resync", 10*time.Second, func() bool { return revoked(w, "after") && w.State().Synced() })
			if !strings.Contains(logs.String(), "another NATS client") {
				t.Fatalf("hijack not logged:\n%s", logs)
			}
			// Still healthy afterwards: no resync loop.
			st := w.Stats()
			time.Sleep(3 * interval)
			if st2 := w.Stats(); st2.Resyncs != st.Resyncs || !w.State().Synced() {
				t.Fatalf("resyncs %d -> %d after recovering\n%s", st.Resyncs, st2.Resyncs, logs)
			}
		})
	}
}

// TestQuietEdgeDoesNotResync: the bucket's newest entry expires while the
// edge is quiet (max age); the stream's last sequence is never delivered
// again, which must not look like a hijack.
func TestQuietEdgeDoesNotResync(t *testing.T) {
	ns := startServer(t, nil)
	wr := newWriter(t, ns.url())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := wr.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, TTL: 2 * time.Second, History: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.PutString(ctx, "revoke.session.short", revokeValue()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // expired before the edge starts
	w, logs := watch(t, natsedge.Config{URLs: []string{ns.url()}, CrossCheckInterval: 300 * time.Millisecond})
	waitFor(t, "synced", 10*time.Second, func() bool { return w.State().Synced() })
	time.Sleep(2 * time.Second)
	if st := w.Stats(); st.Resyncs != 0 || st.Hijacks != 0 || st.CrossChecks < 3 {
		t.Fatalf("stats %+v\n%s", st, logs)
	}
}

// TestTwoReplicasShareOneCredential: replicas with the same edge credential
// take different consumer slots and both follow the bucket, also when
// other slots are taken.
func TestTwoReplicasShareOneCredential(t *testing.T) {
	ns := secureServer(t)
	wr := newWriter(t, ns.url(), nats.UserInfo(daemonUser, daemonPass))
	// Six slots held by replicas that went away (or other replicas).
	for n := 0; n < 6; n++ {
		name := natsedge.ConsumerName("a", n)
		body := fmt.Sprintf(`{"stream_name":"KV_%s","config":{"name":%q,"deliver_subject":"_EDGEPASS.a.gone.%d","ack_policy":"none","inactive_threshold":60000000000},"action":"create"}`, bucket, name, n)
		if m, err := wr.nc.Request("$JS.API.CONSUMER.CREATE.KV_"+bucket+"."+name, []byte(body), 5*time.Second); err != nil || strings.Contains(string(m.Data), `"error"`) {
			t.Fatalf("squat %s: %v %s", name, err, m.Data)
		}
	}
	cfg := natsedge.Config{URLs: []string{ns.url()}, User: "a", Password: edgeAPass}
	cfg1, cfg2 := cfg, cfg
	cfg1.ReplicaID, cfg2.ReplicaID = "r1", "r2"
	w1, _ := watch(t, cfg1)
	w2, _ := watch(t, cfg2)
	waitFor(t, "both synced", 10*time.Second, func() bool { return w1.State().Synced() && w2.State().Synced() })
	c1, c2 := w1.Stats().Consumer, w2.Stats().Consumer
	free := map[string]bool{natsedge.ConsumerName("a", 6): true, natsedge.ConsumerName("a", 7): true}
	if c1 == c2 || !free[c1] || !free[c2] {
		t.Fatalf("consumers %q and %q, want the two free slots", c1, c2)
	}
	wr.put(t, "revoke.session.shared", revokeValue())
	waitFor(t, "both apply", 10*time.Second, func() bool { return revoked(w1, "shared") && revoked(w2, "shared") })
}

// TestTLSClientCertificateAuth: a server with verify_and_map knows the edge
// by its certificate.
func TestTLSClientCertificateAuth(t *testing.T) {
	ca := newTestPKI(t)
	srvCert := ca.serverCert(t)
	edgeCert, edgeKey := ca.clientCert(t, "tlsedge")
	daemonCert, daemonKey := ca.clientCert(t, daemonUser)
	ns := startServer(t, func(o *server.Options) {
		o.TLS = true
		o.TLSVerify = true
		o.TLSMap = true
		o.TLSTimeout = 5
		o.TLSConfig = ca.serverTLS(srvCert)
		o.Users = []*server.User{
			{Username: daemonUser},
			{Username: "tlsedge", Permissions: edgePermissions("tlsedge")},
		}
	})
	wr := newWriter(t, ns.url(), nats.RootCAs(ca.caFile), nats.ClientCert(daemonCert, daemonKey))
	logs := followsWithItsPermissions(t, wr, natsedge.Config{URLs: []string{ns.url()}, CAFile: ca.caFile, EdgeName: "tlsedge", CertFile: edgeCert, KeyFile: edgeKey}, "c", "a client certificate")
	// Without a certificate the server refuses the edge.
	if !connectRefused(t, natsedge.Config{URLs: []string{ns.url()}, CAFile: ca.caFile, EdgeName: "tlsedge", ReplicaID: "nocert"}, logs) {
		t.Fatal("connected without a client certificate")
	}
}

// TestPasswordFileRotation: the edge reads its password file again when it
// reconnects, so the daemon can rotate generated passwords.
func TestPasswordFileRotation(t *testing.T) {
	users := func(pw string) func(o *server.Options) {
		return func(o *server.Options) {
			o.Users = []*server.User{
				{Username: daemonUser, Password: daemonPass},
				{Username: "a", Password: pw, Permissions: edgePermissions("a")},
			}
		}
	}
	ns := startServer(t, users("first-pw"))
	wr := newWriter(t, ns.url(), nats.UserInfo(daemonUser, daemonPass))
	wr.put(t, "revoke.session.p1", revokeValue())
	pwFile := filepath.Join(t.TempDir(), "a.password")
	if err := os.WriteFile(pwFile, []byte("first-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w, logs := watch(t, natsedge.Config{URLs: []string{ns.url()}, User: "a", PasswordFile: pwFile})
	waitFor(t, "replay", 10*time.Second, func() bool { return revoked(w, "p1") })
	// Rotate: new password on the server and in the file.
	wr.nc.Close()
	ns.stop()
	users("second-pw")(&ns.opts)
	if err := os.WriteFile(pwFile, []byte("second-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ns.start()
	wr2 := newWriter(t, ns.url(), nats.UserInfo(daemonUser, daemonPass))
	wr2.put(t, "revoke.session.p2", revokeValue())
	waitFor(t, "applied after the rotation", 15*time.Second, func() bool { return revoked(w, "p2") })
	if strings.Contains(logs.String(), "first-pw") || strings.Contains(logs.String(), "second-pw") {
		t.Fatalf("a password reached the log:\n%s", logs)
	}
}
