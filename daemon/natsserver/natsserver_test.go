package natsserver

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edgepass/edgepass/plugin/natsedge"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// external starts a standalone server the way an operator would run one.
func external(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port, opts.NoSigs, opts.NoLog = "127.0.0.1", server.RANDOM_PORT, true, true
	if opts.JetStream {
		opts.StoreDir = t.TempDir()
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

func TestEmbeddedPersistsAcrossRestart(t *testing.T) {
	ctx := ctxT(t)
	dir := t.TempDir()
	o := Options{Embedded: true, Listen: "127.0.0.1:0", DataDir: dir}
	c, err := Open(ctx, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if !strings.HasPrefix(c.ClientURL(), "nats://127.0.0.1:") || strings.HasSuffix(c.ClientURL(), ":4222") {
		t.Errorf("ClientURL = %q, want a random loopback port", c.ClientURL())
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	kv, err := c.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "t", Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if c.Ping(ctx) == nil {
		t.Error("Ping after Close = nil, want an error")
	}

	c2, err := Open(ctx, Options{Embedded: true, DataDir: dir}) // in-process only this time
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer c2.Close(ctx)
	if c2.ClientURL() != "" {
		t.Errorf("ClientURL without listen = %q, want empty", c2.ClientURL())
	}
	kv2, err := c2.JS.KeyValue(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv2.Get(ctx, "k")
	if err != nil || string(e.Value()) != "v" {
		t.Fatalf("after restart Get = %v, %v; want v", e, err)
	}
}

func TestExternal(t *testing.T) {
	ctx := ctxT(t)
	tokenSrv := external(t, &server.Options{JetStream: true, Authorization: "s3cret-token"})
	userSrv := external(t, &server.Options{JetStream: true, Username: "edgepass", Password: "pw"})
	noJS := external(t, &server.Options{})
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		o       Options
		wantErr string
	}{
		{"token", Options{URLs: []string{tokenSrv.ClientURL()}, Token: "s3cret-token"}, ""},
		{"user and password", Options{URLs: []string{userSrv.ClientURL()}, User: "edgepass", Password: "pw"}, ""},
		{"wrong token", Options{URLs: []string{tokenSrv.ClientURL()}, Token: "guess"}, "nats: cannot connect to " + tokenSrv.ClientURL()},
		{"wrong password", Options{URLs: []string{userSrv.ClientURL()}, User: "edgepass", Password: "nope"}, "check nats.urls and the credentials"},
		{"nothing listening", Options{URLs: []string{"nats://127.0.0.1:1"}, ConnectTimeout: 2 * time.Second}, "nats: cannot connect to nats://127.0.0.1:1"},
		{"jetstream disabled", Options{URLs: []string{noJS.ClientURL()}, ConnectTimeout: 2 * time.Second}, "JetStream"},
		{"no urls", Options{}, "nats: no server URL"},
		{"bad CA file", Options{URLs: []string{tokenSrv.ClientURL()}, CAFile: caFile}, "holds no PEM certificate"},
		{"missing credentials", Options{URLs: []string{tokenSrv.ClientURL()}, CredentialsFile: "/nonexistent.creds"}, "check nats.credentialsFile"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Open(ctx, tc.o)
			if tc.wantErr != "" {
				if err == nil {
					c.Close(ctx)
				}
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer c.Close(ctx)
			if c.Embedded() {
				t.Error("Embedded() = true for an external server")
			}
			if _, err := c.JS.AccountInfo(ctx); err != nil {
				t.Errorf("AccountInfo: %v", err)
			}
		})
	}
}

func TestEmbeddedErrors(t *testing.T) {
	ctx := ctxT(t)
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	busy := external(t, &server.Options{})
	tests := []struct {
		name    string
		o       Options
		wantErr string
	}{
		{"no data dir", Options{Embedded: true}, "set nats.embedded.dataDir"},
		{"data dir is a file", Options{Embedded: true, DataDir: filepath.Join(notADir, "sub")}, "check nats.embedded.dataDir"},
		{"bad listen", Options{Embedded: true, DataDir: t.TempDir(), Listen: "localhost"}, "check nats.embedded.listen"},
		{"port in use", Options{Embedded: true, DataDir: t.TempDir(), Listen: strings.TrimPrefix(busy.ClientURL(), "nats://")}, "check nats.embedded.listen"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Open(ctx, tc.o)
			if err == nil {
				c.Close(ctx)
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

// openWithEdgeAuth starts an embedded server whose edges log in as
// edge / edge-password-0123456789 and may only use the bucket "edge".
func openWithEdgeAuth(t *testing.T) *Conn {
	t.Helper()
	ctx := ctxT(t)
	c, err := Open(ctx, Options{Embedded: true, DataDir: t.TempDir(), Listen: "127.0.0.1:0",
		EdgeUser: "edge", EdgePassword: "edge-password-0123456789", EdgeBucket: "edge"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func TestEmbeddedEdgeAuthentication(t *testing.T) {
	ctx := ctxT(t)
	c := openWithEdgeAuth(t)
	edgeKV, err := c.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "edge"})
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := c.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "sessions"})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = edgeKV.Put(ctx, "keys", []byte(`{"keys":[]}`))
	_, _ = secrets.Put(ctx, "s1", []byte(`{"refreshToken":"secret"}`))

	// Attack: connecting without credentials or with a wrong password.
	for _, opts := range [][]nats.Option{nil, {nats.UserInfo("edge", "guess")}, {nats.UserInfo(DaemonUser, "guess")}} {
		if nc, err := nats.Connect(c.ClientURL(), opts...); err == nil {
			nc.Close()
			t.Errorf("connected with %d options; want an authorization error", len(opts))
		}
	}

	violations := make(chan error, 16)
	edge, err := nats.Connect(c.ClientURL(), nats.UserInfo("edge", "edge-password-0123456789"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err }))
	if err != nil {
		t.Fatalf("edge user cannot connect: %v", err)
	}
	defer edge.Close()
	ejs, _ := jetstream.New(edge)

	// Allowed: watch the edge bucket, publish a heartbeat.
	kv, err := ejs.KeyValue(ctx, "edge")
	if err != nil {
		t.Fatalf("edge cannot bind the edge bucket: %v", err)
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		t.Fatalf("edge cannot watch the edge bucket: %v", err)
	}
	select {
	case e := <-w.Updates():
		if e == nil || e.Key() != "keys" {
			t.Fatalf("edge watch delivered %v", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("edge watch delivered nothing")
	}
	_ = w.Stop()
	if err := edge.Publish("edgepass.heartbeat.edge", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}

	// Refused: reading the session bucket, forging edge facts, snooping on
	// KV writes and on the daemon's replies.
	shortCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := ejs.KeyValue(shortCtx, "sessions"); err == nil {
		t.Error("edge user could bind the sessions bucket")
	}
	if _, err := kv.Put(shortCtx, "groups.x", []byte(`{"groups":["admins"],"at":1}`)); err == nil {
		t.Error("edge user could write an edge fact")
	}
	for _, subj := range []string{"$KV.sessions.>", DaemonInboxPrefix + ".>", "$JS.API.>"} {
		if _, err := edge.SubscribeSync(subj); err != nil {
			t.Fatal(err)
		}
	}
	_ = edge.Flush()
	deadline := time.After(3 * time.Second)
	got := 0
	for got < 3 {
		select {
		case err := <-violations:
			if strings.Contains(err.Error(), "Permissions Violation") {
				got++
			}
		case <-deadline:
			t.Fatalf("%d of 3 forbidden subscriptions refused", got)
		}
	}
	// The daemon itself still works.
	if _, err := secrets.Put(ctx, "s2", []byte(`{}`)); err != nil {
		t.Errorf("daemon put after edge activity: %v", err)
	}
}

// TestPluginWatcherWorksWithEdgePermissions runs the plugin's own NATS
// client as the edge user: the permissions must be enough for it.
func TestPluginWatcherWorksWithEdgePermissions(t *testing.T) {
	ctx := ctxT(t)
	c := openWithEdgeAuth(t)
	kv, err := c.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "edge"})
	if err != nil {
		t.Fatal(err)
	}
	sid := strings.Repeat("s", 43)
	if _, err := kv.Put(ctx, "revoke.session."+sid, []byte(`{"exp":4000000000}`)); err != nil {
		t.Fatal(err)
	}
	beats, err := c.NC.SubscribeSync("edgepass.heartbeat.edge")
	if err != nil {
		t.Fatal(err)
	}

	w, err := natsedge.Shared(natsedge.Config{URLs: []string{c.ClientURL()}, Bucket: "edge", User: "edge",
		Password: "edge-password-0123456789", ReplicaID: "plugin-test", Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !(w.State().Synced() && w.State().Revoked(sid, "", 1, time.Now())) {
		if time.Now().After(deadline) {
			t.Fatal("plugin watcher did not sync the edge bucket as the edge user")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := beats.NextMsg(10 * time.Second); err != nil {
		t.Errorf("no heartbeat from the plugin: %v", err)
	}
}

// Two daemons on one data directory would each overwrite the other's
// JetStream files: the second must refuse to start, and start once the
// first is gone.
func TestEmbeddedRefusesDataDirInUse(t *testing.T) {
	ctx := ctxT(t)
	dir := t.TempDir()
	first, err := Open(ctx, Options{Embedded: true, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := Open(ctx, Options{Embedded: true, DataDir: dir}); err == nil || !strings.Contains(err.Error(), "in use by another edgepass") {
		if c != nil {
			c.Close(ctx)
		}
		t.Fatalf("second Open on the same data directory = %v, want a refusal", err)
	}
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	again, err := Open(ctx, Options{Embedded: true, DataDir: dir})
	if err != nil {
		t.Fatalf("Open after the first closed: %v", err)
	}
	again.Close(ctx)
}
