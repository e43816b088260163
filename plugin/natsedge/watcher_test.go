package natsedge

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	mrand "math/rand"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/token"
)

const testBucket = "edge"

// logBuf collects watcher logs; t.Logf would panic after the test ends.
type logBuf struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuf) logf(format string, args ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *logBuf) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		if strings.Contains(s, substr) {
			n++
		}
	}
	return n
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// startWatcher starts a private (not shared) watcher for cfg.
func startWatcher(t *testing.T, cfg Config) (*Watcher, *logBuf) {
	t.Helper()
	logs := &logBuf{}
	cfg.Logf = logs.logf
	if cfg.Bucket == "" {
		cfg.Bucket = testBucket
	}
	if cfg.ReplicaID == "" {
		cfg.ReplicaID = "edge-1"
	}
	s, err := validate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := start(s, "test:"+t.Name())
	t.Cleanup(w.Close)
	return w, logs
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// noSnapshot answers the first sync's snapshot consumer (an edge with trust
// anchors reads snapshot.> first) as a bucket without a snapshot.
func noSnapshot(t *testing.T, fc *fakeConn) {
	t.Helper()
	cr := fc.expectCreate(t, testBucket, 5*time.Second)
	c := cr.req.Config
	if c.FilterSubject != "$KV.edge.snapshot.>" || c.DeliverPolicy != "last_per_subject" || c.OptStartSeq != 0 {
		t.Fatalf("snapshot consumer config = %+v", cr.req)
	}
	fc.replyCreated(cr, 0)
}

// activate runs the consumer handshake and returns the create request.
func activate(t *testing.T, fc *fakeConn, pending int) createReq {
	t.Helper()
	cr := fc.expectCreate(t, testBucket, 5*time.Second)
	fc.replyCreated(cr, pending)
	return cr
}

// following starts a watcher for cfg on a new fake server (cfg.URLs names
// it) and activates its first consumer with pending messages.
func following(t *testing.T, cfg Config, pending int) (*Watcher, *logBuf, *fakeConn, createReq) {
	t.Helper()
	srv := newFakeServer(t)
	cfg.URLs = []string{srv.url()}
	w, logs := startWatcher(t, cfg)
	fc := srv.next(5 * time.Second)
	return w, logs, fc, activate(t, fc, pending)
}

func TestConnectSendsClientOptions(t *testing.T) {
	srv := newFakeServer(t)
	startWatcher(t, Config{URLs: []string{srv.url()}})
	fc := srv.next(5 * time.Second)
	want := map[string]any{"verbose": false, "pedantic": false, "headers": true, "no_responders": true, "protocol": float64(1), "name": "edgepass-edge"}
	for k, v := range want {
		if fc.connect[k] != v {
			t.Errorf("CONNECT %s = %v, want %v", k, fc.connect[k], v)
		}
	}
	for _, k := range []string{"auth_token", "user", "pass", "nkey", "sig"} {
		if _, ok := fc.connect[k]; ok {
			t.Errorf("CONNECT carries %s without credentials configured", k)
		}
	}
}

func TestConnectAuthenticates(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		authorize func(c map[string]any, nonce string) bool
	}{
		{"token", Config{Token: "s3cret"}, func(c map[string]any, _ string) bool { return c["auth_token"] == "s3cret" }},
		{"token in URL", Config{}, func(c map[string]any, _ string) bool { return c["auth_token"] == "urltoken" }},
		{"user and password", Config{User: "edge", Password: "pw"}, func(c map[string]any, _ string) bool { return c["user"] == "edge" && c["pass"] == "pw" }},
		{"nkey", Config{NKeySeed: testUserSeed}, func(c map[string]any, nonce string) bool { return verifyNKey(c, nonce, testUserPublic) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServer(t, func(s *fakeServer) { s.authorize = tt.authorize })
			cfg := tt.cfg
			cfg.URLs = []string{srv.url()}
			if tt.name == "token in URL" {
				cfg.URLs = []string{"nats://urltoken@" + srv.ln.Addr().String()}
			}
			w, _ := startWatcher(t, cfg)
			srv.next(5 * time.Second)
			waitFor(t, "connected", 5*time.Second, func() bool { return w.Stats().Connected })
		})
	}
}

// TestConnectRefusedCredentialsRetries keeps retrying (with backoff) and
// logs a clear error when the server refuses the credentials.
func TestConnectRefusedCredentialsRetries(t *testing.T) {
	srv := newFakeServer(t, func(s *fakeServer) {
		s.authorize = func(c map[string]any, _ string) bool { return c["auth_token"] == "right" }
	})
	w, logs := startWatcher(t, Config{URLs: []string{srv.url()}, Token: "wrong"})
	waitFor(t, "two refused attempts", 5*time.Second, func() bool { return w.Stats().ConnectFailures >= 2 })
	if w.Stats().Connects != 0 {
		t.Fatal("connected with wrong credentials")
	}
	if logs.count("Authorization Violation") == 0 {
		t.Fatalf("no clear log of the refusal:\n%s", logs)
	}
	if strings.Contains(logs.String(), "wrong") {
		t.Fatal("the token leaked into the log")
	}
}

// TestNKeySignatureIsChecked refuses a signature over the wrong nonce, so the
// fake really verifies what the client signed.
func TestNKeySignatureIsChecked(t *testing.T) {
	srv := newFakeServer(t, func(s *fakeServer) {
		s.authorize = func(c map[string]any, nonce string) bool { return verifyNKey(c, nonce+"x", testUserPublic) }
	})
	w, _ := startWatcher(t, Config{URLs: []string{srv.url()}, NKeySeed: testUserSeed})
	waitFor(t, "refused attempt", 5*time.Second, func() bool { return w.Stats().ConnectFailures >= 1 })
	if w.Stats().Connects != 0 {
		t.Fatal("connected with a signature over the wrong nonce")
	}
}

// testAnchor is the daemon's trust anchor in the tests: the edge is
// configured with its public half (Config.TrustAnchors).
func testAnchor(t *testing.T) (ed25519.PrivateKey, string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv, token.FormatAnchor(pub)
}

func TestReplayAppliesEntriesAndReportsSync(t *testing.T) {
	priv, anchor := testAnchor(t)
	srv := newFakeServer(t)
	w, _ := startWatcher(t, Config{URLs: []string{srv.url()}, TrustAnchors: []string{anchor}})
	fc := srv.next(5 * time.Second)
	noSnapshot(t, fc)
	cr := fc.expectCreate(t, testBucket, 5*time.Second)
	c := cr.req.Config
	if cr.req.Stream != "KV_edge" || c.DeliverPolicy != "last_per_subject" || c.AckPolicy != "none" ||
		c.FilterSubject != "$KV.edge.>" || !c.FlowControl || c.IdleHeartbeat != int64(DefaultIdleHeartbeat) ||
		!c.MemStorage || c.Replicas != 1 || c.HeadersOnly || c.ReplayPolicy != "instant" || c.InactiveThreshold <= 0 || c.OptStartSeq != 0 {
		t.Fatalf("consumer config = %+v", cr.req)
	}
	if !strings.HasPrefix(c.DeliverSubject, "_EDGEPASS.edge.") || len(c.DeliverSubject) < len("_EDGEPASS.edge.")+32 {
		t.Fatalf("deliver subject %q is not under the edge's private inbox", c.DeliverSubject)
	}
	fc.replyCreated(cr, 4)
	exp := time.Now().Add(time.Hour).Unix()
	groups, err := edgestate.SignGroups("subj", edgestate.GroupsFact{Iat: time.Now().UnixMilli(), Groups: []string{"ops"}, At: 100}, priv)
	if err != nil {
		t.Fatal(err)
	}
	fc.deliver(cr, testBucket, "revoke.session.sidA", "", fmt.Sprintf(`{"exp":%d}`, exp), 1, 1, 3)
	fc.deliver(cr, testBucket, "revoke.session.sidB", "", fmt.Sprintf(`{"exp":%d}`, exp), 2, 2, 2)
	fc.deliver(cr, testBucket, "groups.subj", "", string(groups), 3, 3, 1)
	if w.State().Synced() {
		t.Fatal("synced before the pending count reached 0")
	}
	// A delete of a revocation is refused (revocations only expire).
	fc.deliver(cr, testBucket, "revoke.session.sidB", "DEL", "", 4, 4, 0)
	hb := fc.expect(t, "PUB", "edgepass.heartbeat.edge.edge", 5*time.Second)
	st := w.State()
	if !st.Synced() || !st.Revoked("sidA", "", 0, time.Now()) || !st.Revoked("sidB", "", 0, time.Now()) || st.LastSeq() != 4 || st.Stats().Rejected != 1 {
		t.Fatalf("state after replay: synced %v sidA %v sidB %v seq %d", st.Synced(), st.Revoked("sidA", "", 0, time.Now()), st.Revoked("sidB", "", 0, time.Now()), st.LastSeq())
	}
	if g, ok := st.GroupsOverride("subj", 50); !ok || len(g) != 1 || g[0] != "ops" {
		t.Fatalf("groups override = %v %v", g, ok)
	}
	var beat map[string]any
	if err := json.Unmarshal(hb.payload, &beat); err != nil {
		t.Fatal(err)
	}
	if hb.args[0] != "edgepass.heartbeat.edge.edge" || beat["edge"] != "edge" || beat["replica"] != "edge-1" || beat["bucket"] != "edge" || beat["seq"] != float64(4) || beat["synced"] != true || beat["revokedSessions"] != float64(2) || beat["groups"] != float64(1) {
		t.Fatalf("heartbeat on %s = %s", hb.args[0], hb.payload)
	}
	for _, k := range []string{"heardAgoMs", "revokedUsers", "rejected", "at"} {
		if _, ok := beat[k]; !ok {
			t.Fatalf("heartbeat lacks %s: %s", k, hb.payload)
		}
	}
}

func TestEmptyBucketIsSyncedAtCreation(t *testing.T) {
	srv := newFakeServer(t)
	w, _ := startWatcher(t, Config{URLs: []string{srv.url()}})
	fc := srv.next(5 * time.Second)
	activate(t, fc, 0)
	waitFor(t, "synced", 5*time.Second, func() bool { return w.State().Synced() })
}

// TestMalformedDeliveriesAreCountedNotFatal keeps the connection and the
// consumer when the bucket holds junk.
func TestMalformedDeliveriesAreCountedNotFatal(t *testing.T) {
	w, _, fc, cr := following(t, Config{}, 5)
	fc.deliver(cr, testBucket, "revoke.session.x", "", `{not json`, 1, 1, 4)
	fc.deliver(cr, testBucket, "whatever.key", "", `{}`, 2, 2, 3)
	fc.deliver(cr, testBucket, "revoke.session.y", "", strings.Repeat("a", 100<<10), 3, 3, 2)
	// A reply subject that is not a JetStream ack: skipped, not applied.
	fc.send(fmt.Sprintf("MSG $KV.edge.revoke.session.z %s $JS.ACK.bogus 2\r\n{}\r\n", cr.subSID))
	fc.deliver(cr, testBucket, "revoke.session.ok", "", `{"exp":0}`, 4, 4, 0)
	waitFor(t, "synced", 5*time.Second, func() bool { return w.State().Synced() })
	if got := w.State().Stats().Rejected; got != 3 {
		t.Fatalf("rejected = %d, want 3", got)
	}
	if w.Stats().Malformed != 1 || w.State().Revoked("z", "", 0, time.Now()) {
		t.Fatalf("bad reply subject: malformed = %d", w.Stats().Malformed)
	}
	if !w.State().Revoked("ok", "", 0, time.Now()) || w.Stats().Disconnects != 0 || w.Stats().Resyncs != 0 {
		t.Fatalf("stats %+v", w.Stats())
	}
}

func TestReconnectResumesFromLastAppliedSequence(t *testing.T) {
	srv := newFakeServer(t)
	w, _ := startWatcher(t, Config{URLs: []string{srv.url()}})
	fc := srv.next(5 * time.Second)
	cr := activate(t, fc, 2)
	fc.deliver(cr, testBucket, "revoke.session.a", "", `{"exp":0}`, 41, 1, 1)
	fc.deliver(cr, testBucket, "revoke.session.b", "", `{"exp":0}`, 42, 2, 0)
	waitFor(t, "synced", 5*time.Second, func() bool { return w.State().Synced() })
	fc.close()
	fc2 := srv.next(5 * time.Second)
	cr2 := fc2.expectCreate(t, testBucket, 5*time.Second)
	if cr2.req.Config.DeliverPolicy != "by_start_sequence" || cr2.req.Config.OptStartSeq != 43 {
		t.Fatalf("after reconnect: deliver_policy %s opt_start_seq %d, want by_start_sequence 43", cr2.req.Config.DeliverPolicy, cr2.req.Config.OptStartSeq)
	}
	fc2.replyCreated(cr2, 1)
	fc2.deliver(cr2, testBucket, "revoke.session.c", "", `{"exp":0}`, 43, 1, 0)
	waitFor(t, "revocation after reconnect", 5*time.Second, func() bool { return w.State().Revoked("c", "", 0, time.Now()) })
	if st := w.Stats(); st.Connects != 2 || st.Disconnects != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestFlowControlIsAnswered(t *testing.T) {
	w, _, fc, cr := following(t, Config{}, 1)
	fc.status(cr, "$JS.FC.KV_edge."+cr.name+".abc", "NATS/1.0 100 FlowControl Request\r\n\r\n")
	op := fc.expect(t, "PUB", "$JS.FC.KV_edge."+cr.name+".abc", 5*time.Second)
	if len(op.args) != 2 || op.args[1] != "0" {
		t.Fatalf("flow control reply %v, want an empty message", op.args)
	}
	// A heartbeat that says the consumer is stalled on flow control names
	// the subject to answer.
	fc.status(cr, "", "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 0\r\nNats-Last-Stream: 0\r\nNats-Consumer-Stalled: $JS.FC.KV_edge."+cr.name+".def\r\n\r\n")
	fc.expect(t, "PUB", "$JS.FC.KV_edge."+cr.name+".def", 5*time.Second)
	if w.Stats().FlowControls != 2 {
		t.Fatalf("flow controls = %d", w.Stats().FlowControls)
	}
}

func TestHeartbeatStallRecreatesConsumer(t *testing.T) {
	srv := newFakeServer(t)
	hb := 100 * time.Millisecond
	w, _ := startWatcher(t, Config{URLs: []string{srv.url()}, IdleHeartbeat: hb})
	fc := srv.next(5 * time.Second)
	cr := activate(t, fc, 1)
	if cr.req.Config.IdleHeartbeat != int64(hb) {
		t.Fatalf("idle_heartbeat %d", cr.req.Config.IdleHeartbeat)
	}
	fc.deliver(cr, testBucket, "revoke.session.a", "", `{"exp":0}`, 7, 1, 0)
	// Heartbeats keep the consumer alive...
	for i := 0; i < 6; i++ {
		time.Sleep(hb)
		fc.status(cr, "", "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 1\r\nNats-Last-Stream: 7\r\n\r\n")
	}
	if w.Stats().Stalls != 0 {
		t.Fatal("stalled while heartbeats arrived")
	}
	// ...and their absence recreates it from the next sequence.
	unsub := fc.expect(t, "UNSUB", cr.subSID, 5*time.Second)
	if unsub.args[0] != cr.subSID {
		t.Fatalf("UNSUB %v", unsub.args)
	}
	fc.expect(t, "PUB", "$JS.API.CONSUMER.DELETE.KV_edge."+cr.name, 5*time.Second)
	cr2 := fc.expectCreate(t, testBucket, 5*time.Second)
	if cr2.req.Config.DeliverPolicy != "by_start_sequence" || cr2.req.Config.OptStartSeq != 8 || cr2.subSID == cr.subSID {
		t.Fatalf("recreated consumer %+v sid %s", cr2.req.Config, cr2.subSID)
	}
	if st := w.Stats(); st.Stalls != 1 || st.Resyncs != 1 || st.Disconnects != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSequenceGapRecreatesConsumer(t *testing.T) {
	w, _, fc, cr := following(t, Config{}, 3)
	fc.deliver(cr, testBucket, "revoke.session.a", "", `{"exp":0}`, 10, 1, 2)
	fc.deliver(cr, testBucket, "revoke.session.c", "", `{"exp":0}`, 12, 3, 0) // cseq 2 lost
	cr2 := fc.expectCreate(t, testBucket, 5*time.Second)
	if cr2.req.Config.OptStartSeq != 11 {
		t.Fatalf("opt_start_seq %d, want 11", cr2.req.Config.OptStartSeq)
	}
	if w.State().Revoked("c", "", 0, time.Now()) {
		t.Fatal("applied the message after the gap")
	}
	// Messages still arriving for the old consumer are ignored.
	fc.deliver(cr, testBucket, "revoke.session.old", "", `{"exp":0}`, 13, 4, 0)
	fc.replyCreated(cr2, 2)
	fc.deliver(cr2, testBucket, "revoke.session.b", "", `{"exp":0}`, 11, 1, 1)
	fc.deliver(cr2, testBucket, "revoke.session.c", "", `{"exp":0}`, 12, 2, 0)
	waitFor(t, "caught up after the gap", 5*time.Second, func() bool { return w.State().Revoked("c", "", 0, time.Now()) })
	if !w.State().Revoked("b", "", 0, time.Now()) || w.State().Revoked("old", "", 0, time.Now()) || w.Stats().Gaps != 1 {
		t.Fatalf("after resync: stats %+v", w.Stats())
	}
}

func TestHeartbeatReportingMissedMessagesRecreatesConsumer(t *testing.T) {
	w, _, fc, cr := following(t, Config{}, 1)
	fc.deliver(cr, testBucket, "revoke.session.a", "", `{"exp":0}`, 5, 1, 0)
	fc.status(cr, "", "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 2\r\nNats-Last-Stream: 6\r\n\r\n")
	cr2 := fc.expectCreate(t, testBucket, 5*time.Second)
	if cr2.req.Config.OptStartSeq != 6 || w.Stats().Gaps != 1 {
		t.Fatalf("opt_start_seq %d gaps %d", cr2.req.Config.OptStartSeq, w.Stats().Gaps)
	}
}

func TestMissingBucketIsRetriedAndLoggedOnce(t *testing.T) {
	srv := newFakeServer(t)
	w, logs := startWatcher(t, Config{URLs: []string{srv.url()}})
	fc := srv.next(5 * time.Second)
	notFound := `{"type":"io.nats.jetstream.api.v1.consumer_create_response","error":{"code":404,"err_code":10059,"description":"stream not found"}}`
	for i := 0; i < 3; i++ {
		cr := fc.expectCreate(t, testBucket, 5*time.Second)
		fc.send(fmt.Sprintf("MSG %s 1 %d\r\n%s\r\n", cr.reply, len(notFound), notFound))
	}
	cr := fc.expectCreate(t, testBucket, 5*time.Second)
	if n := logs.count("does not exist yet"); n != 1 {
		t.Fatalf("logged the missing bucket %d times:\n%s", n, logs)
	}
	fc.replyCreated(cr, 0)
	waitFor(t, "synced", 5*time.Second, func() bool { return w.State().Synced() })
}

func TestNoRespondersIsRetried(t *testing.T) {
	srv := newFakeServer(t)
	_, logs := startWatcher(t, Config{URLs: []string{srv.url()}})
	fc := srv.next(5 * time.Second)
	cr := fc.expectCreate(t, testBucket, 5*time.Second)
	fc.send(fmt.Sprintf("HMSG %s 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n", cr.reply))
	fc.expectCreate(t, testBucket, 5*time.Second)
	waitFor(t, "log", time.Second, func() bool { return logs.count("JetStream") > 0 })
}

func TestUnansweredPingsReconnect(t *testing.T) {
	srv := newFakeServer(t, func(s *fakeServer) { s.answerPings = false })
	w, logs := startWatcher(t, Config{URLs: []string{srv.url()}, IdleHeartbeat: 100 * time.Millisecond})
	srv.next(5 * time.Second)
	srv.next(5 * time.Second)
	if w.Stats().Disconnects < 1 || logs.count("PING") == 0 {
		t.Fatalf("stats %+v logs:\n%s", w.Stats(), logs)
	}
}

func TestProtocolViolationsReconnect(t *testing.T) {
	tests := []struct {
		name  string
		frame string
	}{
		{"unknown operation", "HELLO\r\n"},
		{"payload over max_payload", "MSG x 1 " + fmt.Sprint(2048+payloadSlack+1) + "\r\n"},
		{"bad MSG", "MSG x y z\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServer(t, func(s *fakeServer) { s.maxPayload = 2048 })
			w, _ := startWatcher(t, Config{URLs: []string{srv.url()}})
			fc := srv.next(5 * time.Second)
			fc.send(tt.frame)
			srv.next(5 * time.Second)
			if st := w.Stats(); st.ProtocolErrors != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestServerErrors(t *testing.T) {
	srv := newFakeServer(t)
	w, logs := startWatcher(t, Config{URLs: []string{srv.url()}})
	fc := srv.next(5 * time.Second)
	activate(t, fc, 0)
	fc.send("-ERR 'Permissions Violation for Publish to \"edgepass.heartbeat.edge\"'\r\n")
	waitFor(t, "log", 5*time.Second, func() bool { return logs.count("Permissions Violation") > 0 })
	if w.Stats().Disconnects != 0 {
		t.Fatal("a permissions violation dropped the connection")
	}
	fc.send("-ERR 'Stale Connection'\r\n")
	srv.next(5 * time.Second)
	if w.Stats().Disconnects != 1 {
		t.Fatalf("stats %+v", w.Stats())
	}
}

func TestFailsOverToNextURL(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	srv := newFakeServer(t)
	w, _ := startWatcher(t, Config{URLs: []string{"nats://" + deadAddr + ", " + srv.ln.Addr().String()}})
	srv.next(5 * time.Second)
	waitFor(t, "connected", 5*time.Second, func() bool { return w.Stats().Connected })
	if st := w.Stats(); st.ConnectFailures > 1 || st.Server != "nats://"+srv.ln.Addr().String() {
		t.Fatalf("stats %+v", st)
	}
}

func selfSigned(t *testing.T, dir string) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "nats.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"nats.test"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, caFile
}

func TestTLS(t *testing.T) {
	cert, caFile := selfSigned(t, t.TempDir())
	withCert := func(s *fakeServer) { s.tlsCert = &cert }
	t.Run("tls_required INFO upgrades with the configured CA", func(t *testing.T) {
		srv := newFakeServer(t, withCert)
		w, _ := startWatcher(t, Config{URLs: []string{srv.url()}, CAFile: caFile, TLSServerName: "nats.test"})
		fc := srv.next(5 * time.Second)
		if _, ok := fc.nc.(*tls.Conn); !ok || fc.connect["tls_required"] != true {
			t.Fatal("not a TLS connection")
		}
		waitFor(t, "connected", 5*time.Second, func() bool { return w.Stats().Connected })
	})
	t.Run("unknown CA is refused", func(t *testing.T) {
		srv := newFakeServer(t, withCert)
		w, logs := startWatcher(t, Config{URLs: []string{srv.url()}, TLSServerName: "nats.test"})
		waitFor(t, "refusal logged", 5*time.Second, func() bool { return logs.count("TLS handshake") > 0 })
		if w.Stats().Connects != 0 {
			t.Fatalf("stats %+v logs:\n%s", w.Stats(), logs)
		}
	})
	t.Run("wrong server name is refused", func(t *testing.T) {
		srv := newFakeServer(t, withCert)
		w, _ := startWatcher(t, Config{URLs: []string{srv.url()}, CAFile: caFile})
		waitFor(t, "refused", 5*time.Second, func() bool { return w.Stats().ConnectFailures >= 1 })
		if w.Stats().Connects != 0 {
			t.Fatal("connected to a server whose certificate names another host")
		}
	})
	t.Run("insecure skips verification", func(t *testing.T) {
		srv := newFakeServer(t, withCert)
		startWatcher(t, Config{URLs: []string{srv.url()}, InsecureSkipVerify: true})
		srv.next(5 * time.Second)
	})
	t.Run("tls URL refuses a plaintext-only server", func(t *testing.T) {
		srv := newFakeServer(t)
		w, logs := startWatcher(t, Config{URLs: []string{"tls://" + srv.ln.Addr().String()}, CAFile: caFile})
		waitFor(t, "refusal logged", 5*time.Second, func() bool { return logs.count("does not offer TLS") > 0 })
		if w.Stats().Connects != 0 {
			t.Fatalf("stats %+v logs:\n%s", w.Stats(), logs)
		}
	})
}

func TestSharedValidatesConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no URL", Config{}, "no NATS URL"},
		{"bad scheme", Config{URLs: []string{"ws://h:1"}}, "not supported"},
		{"bad port", Config{URLs: []string{"nats://h:99999"}}, "bad port"},
		{"path", Config{URLs: []string{"nats://h:4222/x"}}, "path"},
		{"bad seed", Config{URLs: []string{"h"}, NKeySeed: "SUXYZ"}, "nkeySeed"},
		{"missing CA", Config{URLs: []string{"h"}, CAFile: "/nonexistent/ca.pem"}, "caFile"},
		{"bad bucket", Config{URLs: []string{"h"}, Bucket: "a.b"}, "bucket"},
		{"token and user", Config{URLs: []string{"h"}, Token: "t", User: "u"}, "only one"},
		{"tiny heartbeat", Config{URLs: []string{"h"}, IdleHeartbeat: time.Millisecond}, "heartbeat"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := Shared(tt.cfg)
			if err == nil || w != nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Shared = %v, %v; want an error mentioning %q", w, err, tt.want)
			}
		})
	}
	// Credentials in a URL never show up in errors.
	_, err := Shared(Config{URLs: []string{"ws://user:hunter2@h:1"}})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err = %v", err)
	}
}

func TestSharedIsOnePerConfigAndNeverBlocks(t *testing.T) {
	srv := newFakeServer(t)
	logs := &logBuf{}
	cfg := Config{URLs: []string{srv.url()}, Bucket: testBucket, Logf: logs.logf}
	before := runtime.NumGoroutine()
	w, err := Shared(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	srv.next(5 * time.Second)
	waitFor(t, "connected", 5*time.Second, func() bool { return w.Stats().Connected })
	during := runtime.NumGoroutine()
	for i := 0; i < 10000; i++ {
		w2, err := Shared(cfg)
		if err != nil || w2 != w {
			t.Fatalf("call %d returned another watcher", i)
		}
	}
	if after := runtime.NumGoroutine(); after > during+2 {
		t.Fatalf("goroutines grew from %d to %d over 10,000 Shared calls", during, after)
	}
	if during-before > 4 {
		t.Fatalf("one watcher uses %d goroutines", during-before)
	}
	select {
	case <-srv.conns:
		t.Fatal("a second connection was opened")
	case <-time.After(50 * time.Millisecond):
	}
	other, err := Shared(Config{URLs: []string{srv.url()}, Bucket: "other", Logf: logs.logf})
	if err != nil || other == w {
		t.Fatalf("a different Config shares the watcher: %v", err)
	}
	other.Close()

	// Shared does not wait for an unreachable server.
	unreachable := Config{URLs: []string{"nats://192.0.2.1:4222"}, Logf: logs.logf}
	start := time.Now()
	w3, err := Shared(unreachable)
	if err != nil {
		t.Fatal(err)
	}
	defer w3.Close()
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("Shared blocked for %s", d)
	}
}

func TestCloseStopsEverything(t *testing.T) {
	srv := newFakeServer(t)
	before := runtime.NumGoroutine()
	logs := &logBuf{}
	w, err := Shared(Config{URLs: []string{srv.url()}, Bucket: testBucket, Logf: logs.logf})
	if err != nil {
		t.Fatal(err)
	}
	fc := srv.next(5 * time.Second)
	activate(t, fc, 0)
	waitFor(t, "synced", 5*time.Second, func() bool { return w.State().Synced() })
	w.Close()
	select {
	case <-fc.done:
	case <-time.After(5 * time.Second):
		t.Fatal("connection still open after Close")
	}
	waitFor(t, "goroutines to exit", 5*time.Second, func() bool { return runtime.NumGoroutine() <= before+1 })
	w2, err := Shared(Config{URLs: []string{srv.url()}, Bucket: testBucket, Logf: logs.logf})
	if err != nil || w2 == w {
		t.Fatal("Shared returned a closed watcher")
	}
	w2.Close()
}

func TestBackoffIsExponentialCappedAndJittered(t *testing.T) {
	w := &Watcher{rnd: newTestRand()}
	prevMax := time.Duration(0)
	for attempt := 1; attempt <= 12; attempt++ {
		full := backoffBase << (attempt - 1)
		if full > backoffCap || full <= 0 {
			full = backoffCap
		}
		seen := map[time.Duration]bool{}
		for i := 0; i < 50; i++ {
			d := w.backoff(attempt, backoffCap)
			if d < full/2 || d > full {
				t.Fatalf("attempt %d: delay %s outside [%s, %s]", attempt, d, full/2, full)
			}
			seen[d] = true
		}
		if len(seen) < 2 {
			t.Fatalf("attempt %d: no jitter", attempt)
		}
		if full < prevMax {
			t.Fatal("backoff shrank")
		}
		prevMax = full
	}
}

// TestOversizedEntryIsSkippedNotFatal: a value the server allows but no edge
// fact can be is read past, counted and skipped, without a reconnect loop.
func TestOversizedEntryIsSkippedNotFatal(t *testing.T) {
	srv := newFakeServer(t, func(s *fakeServer) { s.maxPayload = 8 << 20 })
	w, _ := startWatcher(t, Config{URLs: []string{srv.url()}})
	fc := srv.next(5 * time.Second)
	cr := activate(t, fc, 3)
	fc.deliver(cr, testBucket, "revoke.session.big", "", strings.Repeat("x", maxKeepPayload+1), 1, 1, 2)
	fc.deliver(cr, testBucket, "revoke.session.hdr", "", "", 2, 2, 1)
	// A header block that is not NATS/1.0.
	hdr := "XXXX/1.0\r\n\r\n"
	fc.send(fmt.Sprintf("HMSG $KV.edge.revoke.session.bad %s $JS.ACK.KV_edge.%s.1.3.3.0.1 %d %d\r\n%s\r\n", cr.subSID, cr.name, len(hdr), len(hdr), hdr))
	fc.deliver(cr, testBucket, "revoke.session.ok", "", `{"exp":0}`, 4, 4, 0)
	waitFor(t, "ok", 5*time.Second, func() bool { return w.State().Revoked("ok", "", 0, time.Now()) })
	st := w.Stats()
	if st.Oversized != 1 || st.Malformed != 1 || st.Disconnects != 0 || st.Resyncs != 0 || w.State().Revoked("bad", "", 0, time.Now()) || w.State().Revoked("big", "", 0, time.Now()) {
		t.Fatalf("stats %+v", st)
	}
	if w.State().LastSeq() != 4 {
		t.Fatalf("last seq %d", w.State().LastSeq())
	}
}

// TestForeignStreamDeliveryIsIgnored refuses deliveries whose ack subject
// names another stream: only the edge bucket's consumer may feed the state.
func TestForeignStreamDeliveryIsIgnored(t *testing.T) {
	w, _, fc, cr := following(t, Config{}, 1)
	fc.send(fmt.Sprintf("MSG $KV.edge.revoke.session.evil %s $JS.ACK.KV_other.%s.1.1.1.0.0 2\r\n{}\r\n", cr.subSID, cr.name))
	fc.deliver(cr, testBucket, "revoke.session.ok", "", `{"exp":0}`, 1, 1, 0)
	waitFor(t, "ok", 5*time.Second, func() bool { return w.State().Revoked("ok", "", 0, time.Now()) })
	if w.State().Revoked("evil", "", 0, time.Now()) || w.Stats().Malformed != 1 {
		t.Fatalf("stats %+v", w.Stats())
	}
}

func newTestRand() *mrand.Rand { return mrand.New(mrand.NewSource(1)) }

func TestExpiredFactsArePruned(t *testing.T) {
	w, _, fc, cr := following(t, Config{IdleHeartbeat: 100 * time.Millisecond}, 2)
	old := time.Now().Add(-time.Hour).Unix()
	fc.deliver(cr, testBucket, "revoke.session.old", "", fmt.Sprintf(`{"exp":%d}`, old), 1, 1, 1)
	fc.deliver(cr, testBucket, "revoke.session.new", "", revokeJSON(time.Hour), 2, 2, 0)
	waitFor(t, "applied", 5*time.Second, func() bool { return w.State().Revoked("new", "", 0, time.Now()) })
	waitFor(t, "expired fact pruned", 5*time.Second, func() bool { return w.State().Stats().Sessions == 1 })
}

func revokeJSON(ttl time.Duration) string {
	return fmt.Sprintf(`{"exp":%d}`, time.Now().Add(ttl).Unix())
}

func TestPanickingLoggerDoesNotStopTheWatcher(t *testing.T) {
	srv := newFakeServer(t)
	s, err := validate(Config{URLs: []string{srv.url()}, Bucket: testBucket, Logf: func(string, ...any) { panic("logger broke") }})
	if err != nil {
		t.Fatal(err)
	}
	w := start(s, "test:"+t.Name())
	defer w.Close()
	fc := srv.next(5 * time.Second)
	cr := activate(t, fc, 1)
	fc.deliver(cr, testBucket, "revoke.session.a", "", `{"exp":0}`, 1, 1, 0)
	waitFor(t, "applied", 5*time.Second, func() bool { return w.State().Revoked("a", "", 0, time.Now()) })
}
