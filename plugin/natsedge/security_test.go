package natsedge

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	mrand "math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/plugin/edgestate"
)

// writeFile writes content to a new file in a test directory.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// verifyJWTSig checks a CONNECT's operator-mode credentials: the JWT as
// given and a signature of the nonce by the user key, without "nkey".
func verifyJWTSig(c map[string]any, nonce, wantJWT, wantPublic string) bool {
	jwt, _ := c["jwt"].(string)
	sig, _ := c["sig"].(string)
	if jwt != wantJWT || c["nkey"] != nil {
		return false
	}
	pub, err := decodeUserNKey(wantPublic)
	if err != nil {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(sig)
	return err == nil && ed25519.Verify(pub, []byte(nonce), raw)
}

func TestConnectAuthenticatesFromFiles(t *testing.T) {
	tests := []struct {
		name      string
		cfg       func(t *testing.T) Config
		authorize func(c map[string]any, nonce string) bool
	}{
		{"user and passwordFile", func(t *testing.T) Config {
			return Config{User: "edge", PasswordFile: writeFile(t, "pw", "s3cret-pw\n")}
		}, func(c map[string]any, _ string) bool { return c["user"] == "edge" && c["pass"] == "s3cret-pw" }},
		{"tokenFile", func(t *testing.T) Config {
			return Config{TokenFile: writeFile(t, "token", "  tok-123\n")}
		}, func(c map[string]any, _ string) bool { return c["auth_token"] == "tok-123" }},
		{"nkeySeedFile", func(t *testing.T) Config {
			return Config{NKeySeedFile: writeFile(t, "edge.nk", "# edge user\n"+testUserSeed+"\n")}
		}, func(c map[string]any, nonce string) bool { return verifyNKey(c, nonce, testUserPublic) }},
		{"credsFile", func(t *testing.T) Config {
			return Config{CredsFile: writeFile(t, "edge.creds", testCreds)}
		}, func(c map[string]any, nonce string) bool { return verifyJWTSig(c, nonce, testJWT, testUserPublic) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServer(t, func(s *fakeServer) { s.authorize = tt.authorize })
			cfg := tt.cfg(t)
			cfg.URLs = []string{srv.url()}
			w, _ := startWatcher(t, cfg)
			srv.next(5 * time.Second)
			waitFor(t, "connected", 5*time.Second, func() bool { return w.Stats().Connected })
		})
	}
}

// TestSecretFilesAreReadAgainAtReconnect: a rotated password file is used
// by the next connection, without restarting Traefik.
func TestSecretFilesAreReadAgainAtReconnect(t *testing.T) {
	pwFile := writeFile(t, "pw", "old-pw")
	passes := make(chan string, 16)
	srv := newFakeServer(t, func(s *fakeServer) {
		s.authorize = func(c map[string]any, _ string) bool {
			p, _ := c["pass"].(string)
			passes <- p
			return true
		}
	})
	_, logs := startWatcher(t, Config{URLs: []string{srv.url()}, User: "edge", PasswordFile: pwFile})
	fc := srv.next(5 * time.Second)
	if p := <-passes; p != "old-pw" {
		t.Fatalf("first CONNECT pass %q", p)
	}
	if err := os.WriteFile(pwFile, []byte("new-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fc.close()
	srv.next(5 * time.Second)
	if p := <-passes; p != "new-pw" {
		t.Fatalf("CONNECT after rotation pass %q, want the new file content", p)
	}
	if strings.Contains(logs.String(), "old-pw") || strings.Contains(logs.String(), "new-pw") {
		t.Fatalf("a password reached the log:\n%s", logs)
	}
}

// TestUnreadableSecretFileAtReconnectIsLoggedWithoutTheSecret keeps retrying
// and names the setting when a file disappears after start.
func TestUnreadableSecretFileAtReconnectIsRetried(t *testing.T) {
	tokFile := writeFile(t, "tok", "tok-1")
	srv := newFakeServer(t)
	w, logs := startWatcher(t, Config{URLs: []string{srv.url()}, TokenFile: tokFile})
	fc := srv.next(5 * time.Second)
	if err := os.Remove(tokFile); err != nil {
		t.Fatal(err)
	}
	fc.close()
	waitFor(t, "failed attempts", 5*time.Second, func() bool { return w.Stats().ConnectFailures >= 1 })
	waitFor(t, "log", 5*time.Second, func() bool { return logs.count("nats.tokenFile") > 0 })
	if err := os.WriteFile(tokFile, []byte("tok-2"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c := srv.next(10 * time.Second); c.connect["auth_token"] != "tok-2" {
		t.Fatalf("token %v", c.connect["auth_token"])
	}
}

func TestConfigRefusesUnsafeOrContradictorySettings(t *testing.T) {
	pw := writeFile(t, "pw", "pw")
	empty := writeFile(t, "empty", " \n")
	junk := writeFile(t, "junk.creds", "this-is-my-secret-not-a-creds-file")
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"inline and file token", Config{Token: "t", TokenFile: pw}, []string{"nats.token and nats.tokenFile"}},
		{"inline and file password", Config{User: "u", Password: "p", PasswordFile: pw}, []string{"nats.password and nats.passwordFile"}},
		{"inline and file seed", Config{NKeySeed: testUserSeed, NKeySeedFile: pw}, []string{"nats.nkeySeed and nats.nkeySeedFile"}},
		{"token and creds", Config{TokenFile: pw, CredsFile: pw}, []string{"only one authentication method"}},
		{"user and nkey", Config{User: "u", NKeySeedFile: pw}, []string{"only one authentication method"}},
		{"password without user", Config{PasswordFile: pw}, []string{"need nats.user"}},
		{"missing password file", Config{User: "u", PasswordFile: "/nonexistent/pw"}, []string{"nats.passwordFile", "no such file"}},
		{"empty token file", Config{TokenFile: empty}, []string{"nats.tokenFile", "empty"}},
		{"missing creds file", Config{CredsFile: "/nonexistent/x.creds"}, []string{"nats.credsFile", "no such file"}},
		{"junk creds file", Config{CredsFile: junk}, []string{"nats.credsFile", ".creds"}},
		{"bad seed file", Config{NKeySeedFile: pw}, []string{"nats.nkeySeedFile"}},
		{"cert without key", Config{CertFile: pw}, []string{"nats.certFile and nats.keyFile"}},
		{"unreadable cert", Config{CertFile: pw, KeyFile: pw}, []string{"nats.certFile"}},
		// Attack: a name with subject syntax would reach other edges' subjects.
		{"edge name with a dot", Config{EdgeName: "a.b"}, []string{"nats.edgeName", "a.b"}},
		{"edge name wildcard", Config{EdgeName: ">"}, []string{"nats.edgeName"}},
		{"user that is no edge name", Config{User: "ops@corp", Password: "p"}, []string{"nats.edgeName", "nats.user"}},
		{"bad trust anchor", Config{TrustAnchors: []string{"not-a-key"}}, []string{"trustAnchors"}},
		{"tiny cross-check", Config{CrossCheckInterval: time.Millisecond}, []string{"cross-check"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.URLs = []string{"nats://127.0.0.1:1"}
			w, err := Shared(cfg)
			if err == nil {
				w.Close()
				t.Fatal("accepted")
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("error %q does not mention %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "this-is-my-secret") {
				t.Fatalf("error quotes a secret file: %v", err)
			}
		})
	}
}

// TestCanonicalKeyCoversEveryField: two Configs differing in any setting
// never share a watcher (a shared one would use the first one's settings).
func TestCanonicalKeyCoversEveryField(t *testing.T) {
	base := canonicalKey(Config{})
	v := reflect.ValueOf(&Config{}).Elem()
	typ := v.Type()
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		if f.Name == "Logf" {
			continue
		}
		c := Config{}
		fv := reflect.ValueOf(&c).Elem().Field(i)
		switch fv.Kind() {
		case reflect.String:
			fv.SetString("x")
		case reflect.Bool:
			fv.SetBool(true)
		case reflect.Slice:
			fv.Set(reflect.ValueOf([]string{"x"}))
		case reflect.Int64:
			fv.SetInt(int64(time.Hour))
		default:
			t.Fatalf("field %s of kind %s: extend this test", f.Name, fv.Kind())
		}
		if canonicalKey(c) == base {
			t.Errorf("canonicalKey ignores Config.%s", f.Name)
		}
	}
	if canonicalKey(Config{TrustAnchors: []string{"a", "b"}}) != canonicalKey(Config{TrustAnchors: []string{"b, a"}}) {
		t.Error("the same anchors written differently get two watchers")
	}
}

// subjectMatches reports whether subject matches a NATS permission pattern.
func subjectMatches(pattern, subject string) bool {
	p := strings.Split(pattern, ".")
	s := strings.Split(subject, ".")
	for i := 0; i < len(p); i++ {
		if p[i] == ">" {
			return len(s) > i
		}
		if i >= len(s) || p[i] != "*" && p[i] != s[i] {
			return false
		}
	}
	return len(p) == len(s)
}

func allowed(patterns []string, subject string) bool {
	for _, p := range patterns {
		if subjectMatches(p, subject) {
			return true
		}
	}
	return false
}

// TestEdgeStaysWithinItsPermissions drives the client through connect,
// create, flow control, heartbeat, cross-check and resync and checks every
// SUB and PUB against EdgePermissions: the edge needs nothing more, so its
// credential can be given nothing more.
func TestEdgeStaysWithinItsPermissions(t *testing.T) {
	srv := newFakeServer(t)
	w, _ := startWatcher(t, Config{URLs: []string{srv.url()}, EdgeName: "a", CrossCheckInterval: 100 * time.Millisecond})
	pub, sub := EdgePermissions(testBucket, "a")
	fc := srv.next(5 * time.Second)
	cr := activate(t, fc, 1)
	if !strings.HasPrefix(cr.name, "edge_a_") || !strings.HasPrefix(cr.reply, "_EDGEPASS.a.") {
		t.Fatalf("consumer %s reply %s", cr.name, cr.reply)
	}
	fc.status(cr, "$JS.FC.KV_edge."+cr.name+".x", "NATS/1.0 100 FlowControl Request\r\n\r\n")
	fc.deliver(cr, testBucket, "revoke.session.a", "", `{"exp":0}`, 3, 1, 0)
	fc.deliver(cr, testBucket, "revoke.session.b", "", `{"exp":0}`, 5, 3, 0) // a gap: resync
	cr2 := fc.expectCreate(t, testBucket, 5*time.Second)
	fc.replyCreated(cr2, 0)
	waitFor(t, "heartbeat and cross-check", 10*time.Second, func() bool {
		st := w.Stats()
		return st.Heartbeats > 0 && st.Resyncs == 1 && st.FlowControls == 1
	})
	time.Sleep(300 * time.Millisecond)
	fc.close()
	<-fc.done
	for {
		select {
		case op := <-fc.ops:
			switch op.verb {
			case "SUB":
				if !allowed(sub, op.args[0]) {
					t.Errorf("SUB %s is outside the edge's permissions", op.args[0])
				}
			case "PUB", "HPUB":
				if !allowed(pub, op.args[0]) {
					t.Errorf("PUB %s is outside the edge's permissions", op.args[0])
				}
				if len(op.args) == 3 && !strings.HasPrefix(op.args[1], "_EDGEPASS.a.") {
					t.Errorf("reply subject %s is outside the edge's inbox", op.args[1])
				}
			}
		default:
			return
		}
	}
}

// TestSlotTakenTriesAnotherSlot: a name in use (another replica sharing the
// credential, err_code 10148) moves the create to another slot; when all
// are taken the edge says why and retries later.
func TestSlotTakenTriesAnotherSlot(t *testing.T) {
	srv := newFakeServer(t)
	w, logs := startWatcher(t, Config{URLs: []string{srv.url()}, EdgeName: "a"})
	fc := srv.next(5 * time.Second)
	seen := map[string]bool{}
	for i := 0; i < ConsumerSlots; i++ {
		cr := fc.expectCreate(t, testBucket, 5*time.Second)
		if seen[cr.name] {
			t.Fatalf("slot %s tried twice in one round", cr.name)
		}
		seen[cr.name] = true
		fc.replyError(cr.reply, 400, 10148, "consumer already exists")
	}
	waitFor(t, "log", 5*time.Second, func() bool { return logs.count("consumer slots") > 0 })
	cr := fc.expectCreate(t, testBucket, 10*time.Second)
	fc.replyCreated(cr, 0)
	waitFor(t, "synced", 5*time.Second, func() bool { return w.State().Synced() })
	if st := w.Stats(); st.SlotsTaken != ConsumerSlots || st.Consumer != cr.name {
		t.Fatalf("stats %+v", st)
	}
}

// TestSlotsArePickedRandomly spreads replicas sharing a credential.
func TestSlotsArePickedRandomly(t *testing.T) {
	firsts := map[string]bool{}
	for i := 0; i < 12 && len(firsts) < 2; i++ {
		srv := newFakeServer(t)
		w, _ := startWatcher(t, Config{URLs: []string{srv.url()}, EdgeName: "a"})
		fc := srv.next(5 * time.Second)
		firsts[fc.expectCreate(t, testBucket, 5*time.Second).name] = true
		w.Close()
	}
	if len(firsts) < 2 {
		t.Fatalf("12 watchers all started on %v", firsts)
	}
}

// TestResyncDeletesItsConsumerAndMovesToAnotherSlot: the consumer given up
// is deleted by name, and the new one takes a different slot.
func TestResyncDeletesItsConsumerAndMovesToAnotherSlot(t *testing.T) {
	w, _, fc, cr := following(t, Config{}, 2)
	fc.deliver(cr, testBucket, "revoke.session.a", "", `{"exp":0}`, 1, 1, 1)
	fc.deliver(cr, testBucket, "revoke.session.b", "", `{"exp":0}`, 2, 3, 0)
	del := fc.expect(t, "PUB", "$JS.API.CONSUMER.DELETE.KV_edge.", 5*time.Second)
	if del.args[0] != "$JS.API.CONSUMER.DELETE.KV_edge."+cr.name {
		t.Fatalf("deleted %s, want %s", del.args[0], cr.name)
	}
	cr2 := fc.expectCreate(t, testBucket, 5*time.Second)
	if cr2.name == cr.name || cr2.req.Config.OptStartSeq != 2 {
		t.Fatalf("recreated as %s from %d", cr2.name, cr2.req.Config.OptStartSeq)
	}
	if w.State().Synced() {
		t.Fatal("synced while recreating")
	}
}

// TestReconnectDeletesTheLostConnectionsConsumer frees the slot the previous
// connection's consumer still holds on the server.
func TestReconnectDeletesTheLostConnectionsConsumer(t *testing.T) {
	srv := newFakeServer(t)
	startWatcher(t, Config{URLs: []string{srv.url()}})
	fc := srv.next(5 * time.Second)
	cr := activate(t, fc, 0)
	fc.close()
	fc2 := srv.next(5 * time.Second)
	fc2.expect(t, "PUB", "$JS.API.CONSUMER.DELETE.KV_edge."+cr.name, 5*time.Second)
	if cr2 := fc2.expectCreate(t, testBucket, 5*time.Second); cr2.name == cr.name {
		t.Fatal("recreated in the slot being deleted")
	}
}

// answerInfo answers the next STREAM.INFO request with last.
func answerInfo(t *testing.T, fc *fakeConn, last uint64) {
	t.Helper()
	fc.replyStreamInfo(fc.expectStreamInfo(t, testBucket, 5*time.Second), testBucket, last)
}

// TestHijackedConsumerIsDetectedByCrossCheck: someone deleted the edge's
// consumer and pointed a heartbeat-only one at its inbox. Heartbeats keep
// coming, but the stream moves on and nothing is delivered: within two
// cross-check intervals the edge stops claiming to be synced and recreates
// its consumer from where it was.
func TestHijackedConsumerIsDetectedByCrossCheck(t *testing.T) {
	srv := newFakeServer(t)
	interval := 200 * time.Millisecond
	w, logs := startWatcher(t, Config{URLs: []string{srv.url()}, CrossCheckInterval: interval})
	fc := srv.next(5 * time.Second)
	cr := activate(t, fc, 1)
	fc.deliver(cr, testBucket, "revoke.session.a", "", `{"exp":0}`, 5, 1, 0)
	waitFor(t, "synced", 5*time.Second, func() bool { return w.State().Synced() })
	answerInfo(t, fc, 5) // in step
	// The hijacker's consumer sends heartbeats only; a revocation lands at 6.
	fc.status(cr, "", "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 1\r\nNats-Last-Stream: 6\r\n\r\n")
	start := time.Now()
	answerInfo(t, fc, 6)
	fc.status(cr, "", "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 1\r\nNats-Last-Stream: 6\r\n\r\n")
	answerInfo(t, fc, 6)
	fc.expect(t, "PUB", "$JS.API.CONSUMER.DELETE.KV_edge."+cr.name, 5*time.Second)
	cr2 := fc.expectCreate(t, testBucket, 5*time.Second)
	if d := time.Since(start); d > 2*interval+time.Second {
		t.Fatalf("detected after %s", d)
	}
	if cr2.req.Config.OptStartSeq != 6 || cr2.name == cr.name {
		t.Fatalf("recreated %s from %d", cr2.name, cr2.req.Config.OptStartSeq)
	}
	if w.State().Synced() {
		t.Fatal("still claims synced after the hijack was detected")
	}
	if st := w.Stats(); st.Hijacks != 1 || st.Resyncs != 1 {
		t.Fatalf("stats %+v", st)
	}
	if logs.count("recreating it from sequence 6") != 1 {
		t.Fatalf("hijack not logged once:\n%s", logs)
	}
	fc.replyCreated(cr2, 1)
	fc.deliver(cr2, testBucket, "revoke.session.b", "", `{"exp":0}`, 6, 1, 0)
	waitFor(t, "caught up", 5*time.Second, func() bool { return w.State().Synced() && w.State().Revoked("b", "", 0, time.Now()) })
}

// TestNoFalseHijack: a quiet, healthy edge whose stream's last sequence is
// never delivered (expired, superseded or deleted messages) must not
// resync in a loop.
func TestNoFalseHijack(t *testing.T) {
	interval := 100 * time.Millisecond
	t.Run("everything up to last_seq gone before the consumer was created", func(t *testing.T) {
		srv := newFakeServer(t)
		w, _ := startWatcher(t, Config{URLs: []string{srv.url()}, CrossCheckInterval: interval})
		fc := srv.next(5 * time.Second)
		cr := fc.expectCreate(t, testBucket, 5*time.Second)
		// All nine messages expired: the consumer starts after them.
		fc.replyCreatedAt(cr, 0, 9)
		for i := 0; i < 5; i++ {
			answerInfo(t, fc, 9)
		}
		if st := w.Stats(); st.Resyncs != 0 || st.Hijacks != 0 || !w.State().Synced() {
			t.Fatalf("stats %+v synced %v", st, w.State().Synced())
		}
	})
	t.Run("last message deleted: one recreate, then quiet", func(t *testing.T) {
		w, _, fc, cr := following(t, Config{CrossCheckInterval: interval}, 1)
		fc.deliver(cr, testBucket, "revoke.session.a", "", `{"exp":0}`, 5, 1, 0)
		// Messages 6 to 9 were removed before delivery; the stream says 9.
		answerInfo(t, fc, 9)
		answerInfo(t, fc, 9)
		cr2 := fc.expectCreate(t, testBucket, 5*time.Second)
		// Nothing pending after 5: 6..9 are accounted for.
		fc.replyCreatedAt(cr2, 0, 5)
		for i := 0; i < 5; i++ {
			answerInfo(t, fc, 9)
		}
		if st := w.Stats(); st.Resyncs != 1 || !w.State().Synced() {
			t.Fatalf("resync loop: stats %+v", st)
		}
	})
	t.Run("long replay still delivering", func(t *testing.T) {
		w, _, fc, cr := following(t, Config{CrossCheckInterval: interval}, 100)
		for i := 1; i <= 5; i++ {
			answerInfo(t, fc, 100)
			fc.deliver(cr, testBucket, fmt.Sprintf("revoke.session.s%d", i), "", `{"exp":0}`, i, i, 100-i)
		}
		answerInfo(t, fc, 100)
		if st := w.Stats(); st.Resyncs != 0 || st.Hijacks != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestForeignTrafficOnTheDeliverSubjectIsDetected: anything on the edge's
// deliver subject that its own consumer cannot have sent means another
// consumer was pointed there.
func TestForeignTrafficOnTheDeliverSubjectIsDetected(t *testing.T) {
	tests := []struct {
		name string
		send func(fc *fakeConn, cr createReq)
	}{
		// Attack: a replacement consumer's heartbeat lags what was applied.
		{"heartbeat behind the applied stream sequence", func(fc *fakeConn, cr createReq) {
			fc.status(cr, "", "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 2\r\nNats-Last-Stream: 3\r\n\r\n")
		}},
		// Attack: a fresh heartbeat-only consumer has delivered nothing.
		{"heartbeat of a consumer that delivered less", func(fc *fakeConn, cr createReq) {
			fc.status(cr, "", "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 0\r\nNats-Last-Stream: 9\r\n\r\n")
		}},
		// Attack: a consumer of another name delivers (selected) entries.
		{"delivery from another consumer", func(fc *fakeConn, cr createReq) {
			other := cr
			other.name = "edge_evil_0"
			fc.deliver(other, testBucket, "revoke.session.x", "", `{"exp":0}`, 9, 3, 0)
		}},
		// Attack: flow control of another consumer, to make the edge publish for it.
		{"flow control of another consumer", func(fc *fakeConn, cr createReq) {
			fc.status(cr, "$JS.FC.KV_edge.edge_other_1.x", "NATS/1.0 100 FlowControl Request\r\n\r\n")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, _, fc, cr := following(t, Config{}, 2)
			fc.deliver(cr, testBucket, "revoke.session.a", "", `{"exp":0}`, 4, 1, 1)
			fc.deliver(cr, testBucket, "revoke.session.b", "", `{"exp":0}`, 5, 2, 0)
			waitFor(t, "synced", 5*time.Second, func() bool { return w.State().Synced() })
			tt.send(fc, cr)
			cr2 := fc.expectCreate(t, testBucket, 5*time.Second)
			if cr2.req.Config.OptStartSeq != 6 {
				t.Fatalf("recreated from %d", cr2.req.Config.OptStartSeq)
			}
			if st := w.Stats(); st.Hijacks != 1 || w.State().Synced() || w.State().Revoked("x", "", 0, time.Now()) || st.FlowControls != 0 {
				t.Fatalf("stats %+v synced %v", st, w.State().Synced())
			}
		})
	}
}

// TestRefusedEntriesAreLoggedWithTheKeyNotTheValue: an unsigned keys fact
// (an attacker writing the bucket) is logged by key, rate-limited.
func TestRefusedEntriesAreLoggedWithTheKeyNotTheValue(t *testing.T) {
	w, logs, fc, cr := following(t, Config{}, 3)
	fc.deliver(cr, testBucket, "keys", "", `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"evil","x":"SECRETVALUE"}]}`, 1, 1, 2)
	fc.deliver(cr, testBucket, "revoke.session.z", "DEL", "", 2, 2, 1)
	fc.deliver(cr, testBucket, "revoke.session.y", "", `{"exp":"SECRETVALUE"}`, 3, 3, 0)
	waitFor(t, "applied", 5*time.Second, func() bool { return w.State().Stats().Rejected == 3 })
	if logs.count(`refused entry "keys"`) != 1 || logs.count("refused entry") != 1 {
		t.Fatalf("want one line naming the key (rate-limited):\n%s", logs)
	}
	if strings.Contains(logs.String(), "SECRETVALUE") {
		t.Fatalf("a value reached the log:\n%s", logs)
	}
}

// TestLearn covers cluster peers announced in INFO connect_urls.
func TestLearn(t *testing.T) {
	s, err := validate(Config{URLs: []string{"nats://u:p@10.0.0.1:4222", "nats://10.0.0.2:4222"}, Logf: func(string, ...any) {}})
	if err != nil {
		t.Fatal(err)
	}
	w := &Watcher{s: s, rnd: newTestRand()}
	w.pool.configured = s.servers
	announced := []string{
		"10.0.0.1:4222",       // configured already
		"10.0.0.1:5222",       // same host as a URL with credentials
		"10.0.0.3:4222",       // another host
		"10.0.0.3:4222",       // duplicate
		"evil:pw@10.0.0.9:42", // credentials from a server are refused
		"nats://10.0.0.8:1",   // not host:port
		"",
	}
	for i := 0; i < 100; i++ {
		announced = append(announced, fmt.Sprintf("10.1.0.%d:4222", i))
	}
	w.learn(announced, s.servers[0])
	if n := len(w.pool.learned); n != maxLearned {
		t.Fatalf("learned %d peers, want the bound %d", n, maxLearned)
	}
	byHost := map[string]serverURL{}
	for _, u := range w.pool.learned {
		if _, dup := byHost[u.host]; dup {
			t.Fatalf("%s learned twice", u.host)
		}
		byHost[u.host] = u
	}
	if u, ok := byHost["10.0.0.1:5222"]; !ok || u.user != "u" || u.pass != "p" {
		t.Fatalf("same-host peer %+v", u)
	}
	if u, ok := byHost["10.0.0.3:4222"]; !ok || u.user != "" || u.pass != "" || u.token != "" {
		t.Fatalf("another host got credentials: %+v", u)
	}
	for h := range byHost {
		if strings.Contains(h, "10.0.0.9") || strings.Contains(h, "10.0.0.8") {
			t.Fatalf("learned %s", h)
		}
	}
	// A later INFO replaces the learned peers; an INFO without connect_urls keeps them.
	w.learn([]string{"10.0.0.3:4222", "10.0.0.4:4222"}, s.servers[0])
	w.learn(nil, s.servers[0])
	if len(w.pool.learned) != 2 || w.pool.learned[0].host != "10.0.0.3:4222" {
		t.Fatalf("learned %+v", w.pool.learned)
	}
}

// TestServersAreTriedInRandomOrder spreads edges over a cluster's servers.
func TestServersAreTriedInRandomOrder(t *testing.T) {
	urls := []string{"nats://192.0.2.1:4222", "nats://192.0.2.2:4222", "nats://192.0.2.3:4222"}
	firsts := map[string]bool{}
	for i := 0; i < 30 && len(firsts) < 3; i++ {
		s, err := validate(Config{URLs: urls, Logf: func(string, ...any) {}})
		if err != nil {
			t.Fatal(err)
		}
		w := &Watcher{s: s, rnd: newSeededRand(int64(i))}
		w.pool.configured = append(w.pool.configured, s.servers...)
		w.shuffle(w.pool.configured)
		firsts[w.pool.configured[0].host] = true
	}
	if len(firsts) != 3 {
		t.Fatalf("first servers tried: %v", firsts)
	}
}

// TestReconnectsToAnAnnouncedPeerWithinTwoSeconds: the configured server
// dies; the edge moves to the peer it announced.
func TestReconnectsToAnAnnouncedPeerWithinTwoSeconds(t *testing.T) {
	peer := newFakeServer(t)
	first := newFakeServer(t, func(s *fakeServer) { s.connectURLs = []string{peer.ln.Addr().String()} })
	w, _ := startWatcher(t, Config{URLs: []string{first.url()}})
	fc := first.next(5 * time.Second)
	activate(t, fc, 0)
	waitFor(t, "learned", 5*time.Second, func() bool { return w.Stats().LearnedServers == 1 })
	first.ln.Close()
	fc.close()
	start := time.Now()
	fc2 := peer.next(5 * time.Second)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("reconnected after %s", d)
	}
	activate(t, fc2, 0)
	waitFor(t, "connected", 5*time.Second, func() bool { return w.Stats().Server == "nats://"+peer.ln.Addr().String() })
}

// TestLameDuckMovesToAnotherServer leaves a server that is shutting down.
func TestLameDuckMovesToAnotherServer(t *testing.T) {
	a := newFakeServer(t)
	b := newFakeServer(t)
	startWatcher(t, Config{URLs: []string{a.url(), b.url()}})
	var fc *fakeConn
	var other *fakeServer
	select {
	case c := <-a.conns:
		fc = c
		other = b
	case c := <-b.conns:
		fc = c
		other = a
	case <-time.After(5 * time.Second):
		t.Fatal("no connection")
	}
	fc.send(`INFO {"server_id":"FAKE","ldm":true,"headers":true}` + "\r\n")
	other.next(2 * time.Second)
}

// clientCA makes a CA and a client certificate signed by it, written to files.
func clientCA(t *testing.T) (*x509.CertPool, string, string) {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(10), Subject: pkix.Name{CommonName: "client CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(11), Subject: pkix.Name{CommonName: "edge-a"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	certFile := filepath.Join(dir, "client.pem")
	keyFile := filepath.Join(dir, "client.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return pool, certFile, keyFile
}

func TestTLSClientCertificate(t *testing.T) {
	cert, caFile := selfSigned(t, t.TempDir())
	pool, certFile, keyFile := clientCA(t)
	withMTLS := func(s *fakeServer) { s.tlsCert = &cert; s.clientCAs = pool }
	t.Run("presented", func(t *testing.T) {
		srv := newFakeServer(t, withMTLS)
		w, _ := startWatcher(t, Config{URLs: []string{srv.url()}, CAFile: caFile, TLSServerName: "nats.test", CertFile: certFile, KeyFile: keyFile})
		fc := srv.next(5 * time.Second)
		if st := fc.nc.(*tls.Conn).ConnectionState(); len(st.PeerCertificates) != 1 || st.PeerCertificates[0].Subject.CommonName != "edge-a" {
			t.Fatalf("client certificate %v", st.PeerCertificates)
		}
		waitFor(t, "connected", 5*time.Second, func() bool { return w.Stats().Connected })
	})
	t.Run("absent is refused", func(t *testing.T) {
		srv := newFakeServer(t, withMTLS)
		w, _ := startWatcher(t, Config{URLs: []string{srv.url()}, CAFile: caFile, TLSServerName: "nats.test"})
		waitFor(t, "refused", 5*time.Second, func() bool { return w.Stats().ConnectFailures >= 1 })
		if w.Stats().Connects != 0 {
			t.Fatal("connected without a client certificate")
		}
	})
}

// TestTrustAnchorsGateSignedFacts: without the anchor a keys fact is
// refused; with it, accepted.
func TestTrustAnchorsGateSignedFacts(t *testing.T) {
	priv, anchor := testAnchor(t)
	_, otherAnchor := testAnchor(t)
	pub := priv.Public().(ed25519.PublicKey)
	jwks := fmt.Sprintf(`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1","x":"%s"}]}`, base64.RawURLEncoding.EncodeToString(pub))
	fact, err := signKeysForTest(jwks, priv)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		anchors []string
		want    bool
	}{
		{"configured anchor", []string{otherAnchor, anchor}, true},
		// Attack: a bucket writer introduces a verification key.
		{"another anchor", []string{otherAnchor}, false},
		{"no anchor", nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServer(t)
			w, _ := startWatcher(t, Config{URLs: []string{srv.url()}, TrustAnchors: tt.anchors})
			fc := srv.next(5 * time.Second)
			if len(tt.anchors) > 0 {
				noSnapshot(t, fc)
			}
			cr := activate(t, fc, 1)
			fc.deliver(cr, testBucket, "keys", "", string(fact), 1, 1, 0)
			waitFor(t, "applied", 5*time.Second, func() bool { return w.State().LastSeq() == 1 })
			if got := w.State().Keys() != nil; got != tt.want {
				t.Fatalf("keys accepted = %v, want %v", got, tt.want)
			}
		})
	}
}

func signKeysForTest(jwks string, priv ed25519.PrivateKey) ([]byte, error) {
	return edgestate.SignKeys(edgestate.KeysFact{Iat: time.Now().UnixMilli(), JWKS: json.RawMessage(jwks), MaxTokenLifetime: 3600}, priv)
}

func newSeededRand(seed int64) *mrand.Rand { return mrand.New(mrand.NewSource(seed)) }

// TestRecreatedStreamIsReplayed: the bucket was deleted and created again;
// its sequences restart below what the edge applied. Following it from the
// old sequence would silently skip every new revocation.
func TestRecreatedStreamIsReplayed(t *testing.T) {
	w, logs, fc, cr := following(t, Config{CrossCheckInterval: 100 * time.Millisecond}, 1)
	fc.deliver(cr, testBucket, "revoke.session.a", "", `{"exp":0}`, 50, 1, 0)
	answerInfo(t, fc, 3)
	answerInfo(t, fc, 3)
	cr2 := fc.expectCreate(t, testBucket, 5*time.Second)
	if cr2.req.Config.DeliverPolicy != "last_per_subject" || cr2.req.Config.OptStartSeq != 0 {
		t.Fatalf("after the reset: %s from %d", cr2.req.Config.DeliverPolicy, cr2.req.Config.OptStartSeq)
	}
	if logs.count("recreated") != 1 || w.State().Synced() {
		t.Fatalf("synced %v log:\n%s", w.State().Synced(), logs)
	}
	fc.replyCreated(cr2, 1)
	fc.deliver(cr2, testBucket, "revoke.session.new", "", `{"exp":0}`, 3, 1, 0)
	waitFor(t, "new fact applied", 5*time.Second, func() bool {
		return w.State().Revoked("new", "", 0, time.Now()) && w.State().Revoked("a", "", 0, time.Now())
	})
}
