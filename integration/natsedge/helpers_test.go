// Package natsedge_test runs the plugin's standard-library NATS client
// against a real, embedded nats-server with JetStream, with the bucket
// written by nats.go the way the daemon writes it.
package natsedge_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgepass/edgepass/integration/harness"
	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/natsedge"
	"github.com/edgepass/edgepass/plugin/token"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const bucket = natsedge.DefaultBucket

// Users of the servers that require authentication.
const (
	daemonUser = "daemon"
	daemonPass = "daemon-pw"
)

// edgePermissions is what the NATS user of the edge named edge may do:
// exactly natsedge.EdgePermissions. Running the client with only these
// proves it needs nothing more.
func edgePermissions(edge string) *server.Permissions {
	pub, sub := natsedge.EdgePermissions(bucket, edge)
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: pub},
		Subscribe: &server.SubjectPermission{Allow: sub},
	}
}

// natsServer is an embedded nats-server that can be restarted on the same
// port and store directory.
type natsServer struct {
	t    testing.TB
	opts server.Options
	srv  *server.Server
	mu   sync.Mutex
}

func startServer(t testing.TB, configure func(o *server.Options)) *natsServer {
	t.Helper()
	ns := &natsServer{t: t}
	ns.opts = server.Options{
		Host:      "127.0.0.1",
		Port:      -1,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	}
	if configure != nil {
		configure(&ns.opts)
	}
	ns.start()
	ns.opts.Port = ns.srv.Addr().(*net.TCPAddr).Port
	t.Cleanup(ns.stop)
	return ns
}

func (ns *natsServer) start() {
	ns.t.Helper()
	o := ns.opts
	s, err := server.NewServer(&o)
	if err != nil {
		ns.t.Fatalf("nats-server: %v", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		ns.t.Fatal("nats-server not ready")
	}
	ns.mu.Lock()
	ns.srv = s
	ns.mu.Unlock()
}

func (ns *natsServer) stop() {
	ns.mu.Lock()
	s := ns.srv
	ns.srv = nil
	ns.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

func (ns *natsServer) url() string {
	scheme := "nats"
	if ns.opts.TLSConfig != nil {
		scheme = "tls"
	}
	return fmt.Sprintf("%s://127.0.0.1:%d", scheme, ns.opts.Port)
}

// edgeConns counts the server's connections named like the edge client.
func (ns *natsServer) edgeConns(t testing.TB) int {
	t.Helper()
	ns.mu.Lock()
	s := ns.srv
	ns.mu.Unlock()
	cz, err := s.Connz(&server.ConnzOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range cz.Conns {
		if c.Name == "edgepass-edge" {
			n++
		}
	}
	return n
}

// writer is the daemon side: nats.go's KV on the edge bucket.
type writer struct {
	nc *nats.Conn
	js jetstream.JetStream
	kv jetstream.KeyValue
}

func newWriter(t testing.TB, url string, opts ...nats.Option) *writer {
	t.Helper()
	nc, js := connectJS(t, url, append([]nats.Option{nats.Name("test-daemon")}, opts...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, TTL: 12 * time.Hour, History: 1})
	if err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	return &writer{nc: nc, js: js, kv: kv}
}

// connectJS connects with nats.go to url (a comma-separated list) for the
// rest of the test and opens JetStream on the connection.
func connectJS(t testing.TB, url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("nats.go connect to %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("JetStream on %s: %v", url, err)
	}
	return nc, js
}

func (w *writer) put(t testing.TB, key, value string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rev, err := w.kv.PutString(ctx, key, value)
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return rev
}

func revokeValue() string {
	return fmt.Sprintf(`{"exp":%d}`, time.Now().Add(time.Hour).Unix())
}

// logSink keeps the watcher's log for assertions and failure output.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) logf(format string, args ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// watch starts the shared watcher for cfg and stops it at the end of the test.
func watch(t testing.TB, cfg natsedge.Config) (*natsedge.Watcher, *logSink) {
	t.Helper()
	logs := &logSink{}
	if cfg.Logf == nil {
		cfg.Logf = logs.logf
	}
	if cfg.ReplicaID == "" {
		cfg.ReplicaID = "test-edge"
	}
	w, err := natsedge.Shared(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.Close()
		if t.Failed() {
			t.Logf("watcher log:\n%s", logs)
		}
	})
	return w, logs
}

// followsWithItsPermissions starts an edge configured by cfg on wr's
// bucket and checks that it replays a revocation written before it started
// (key prefix+"1") and applies one written after (prefix+"2"), needing
// nothing beyond its permissions. how names the setup in failures; the
// edge's log is returned.
func followsWithItsPermissions(t *testing.T, wr *writer, cfg natsedge.Config, prefix, how string) *logSink {
	t.Helper()
	wr.put(t, "revoke.session."+prefix+"1", revokeValue())
	w, logs := watch(t, cfg)
	waitFor(t, "replay over "+how, 10*time.Second, func() bool { return revoked(w, prefix+"1") && w.State().Synced() })
	wr.put(t, "revoke.session."+prefix+"2", revokeValue())
	waitFor(t, "live over "+how, 10*time.Second, func() bool { return revoked(w, prefix+"2") })
	if strings.Contains(logs.String(), "Permissions Violation") {
		t.Fatalf("the edge needed more than its permissions:\n%s", logs)
	}
	return logs
}

// connectRefused starts an edge configured by cfg, logging to logs, until
// the server refused a connection attempt; it reports whether the edge
// never connected.
func connectRefused(t *testing.T, cfg natsedge.Config, logs *logSink) bool {
	t.Helper()
	cfg.Logf = logs.logf
	w, err := natsedge.Shared(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	waitFor(t, "refusal", 10*time.Second, func() bool { return w.Stats().ConnectFailures >= 1 })
	return w.Stats().Connects == 0
}

func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	if _, err := harness.WaitEvery(time.Millisecond, timeout, func() (bool, string) { return cond(), "" }); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func revoked(w *natsedge.Watcher, sid string) bool {
	return w.State().Revoked(sid, "", 0, time.Now())
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s)-1) * p)
	return s[i]
}

// testCA makes a CA and a server certificate for 127.0.0.1 / nats.test,
// returning the server's tls.Certificate and the CA file path.
func testCA(t testing.TB) (tls.Certificate, string) {
	t.Helper()
	p := newTestPKI(t)
	return p.serverCert(t), p.caFile
}

// edgeStream is the edge bucket's stream.
func (wr *writer) edgeStream(t testing.TB, ctx context.Context) jetstream.Stream {
	t.Helper()
	s, err := wr.js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// deleteConsumers deletes every consumer on the edge bucket's stream (what a
// server losing the edge's consumer looks like) and returns their names.
func (wr *writer) deleteConsumers(t testing.TB) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream := wr.edgeStream(t, ctx)
	var names []string
	for name := range stream.ConsumerNames(ctx).Name() {
		names = append(names, name)
	}
	for _, name := range names {
		if err := stream.DeleteConsumer(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	return names
}

// newAnchor is the daemon's trust anchor: the private half signs keys and
// groups facts, the text form configures the edge.
func newAnchor(t testing.TB) (ed25519.PrivateKey, string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv, token.FormatAnchor(pub)
}

func signedGroups(t testing.TB, anchor ed25519.PrivateKey, subjectKey string, at int64, groups ...string) string {
	t.Helper()
	v, err := edgestate.SignGroups(subjectKey, edgestate.GroupsFact{Iat: time.Now().UnixMilli(), Groups: groups, At: at}, anchor)
	if err != nil {
		t.Fatal(err)
	}
	return string(v)
}

func signedKeys(t testing.TB, anchor ed25519.PrivateKey, jwks []byte) string {
	t.Helper()
	v, err := edgestate.SignKeys(edgestate.KeysFact{Iat: time.Now().UnixMilli(), JWKS: jwks, MaxTokenLifetime: 24 * 3600}, anchor)
	if err != nil {
		t.Fatal(err)
	}
	return string(v)
}
