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

	"github.com/edgepass/edgepass/daemon/internal/poll"
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
		{"bad edge name", Options{Embedded: true, DataDir: t.TempDir(), Edges: []string{"../x"}, EdgeBucket: "e"}, "edge name \"../x\" is not usable"},
		{"data dir is a file", Options{Embedded: true, DataDir: filepath.Join(notADir, "sub")}, "not a directory"},
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

// openWithEdgeAuth starts an embedded server with one edge user, "edge",
// allowed only natsedge.EdgePermissions on the bucket "edge".
func openWithEdgeAuth(t *testing.T) *Conn {
	t.Helper()
	ctx := ctxT(t)
	c, err := Open(ctx, Options{Embedded: true, DataDir: t.TempDir(), Listen: "127.0.0.1:0",
		Edges: []string{"edge"}, EdgeBucket: "edge"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func edgePassword(t *testing.T, c *Conn) string {
	t.Helper()
	if c.Credentials == nil || len(c.Credentials.Edges) != 1 {
		t.Fatalf("credentials = %+v", c.Credentials)
	}
	return c.Credentials.Edges[0].Password
}

// Attack: a local process (another user, a container, an app behind
// Traefik) connects to the embedded NATS on loopback without credentials,
// or guesses one, to read the signing keys and sessions.
func TestAnonymousClientRefusedOnLoopback(t *testing.T) {
	ctx := ctxT(t)
	// The defaults: no edge list configured beyond the default, loopback listen.
	c, err := Open(ctx, Options{Embedded: true, DataDir: t.TempDir(), Listen: "127.0.0.1:0", Edges: []string{"edge"}, EdgeBucket: "edge"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "keys"}); err != nil {
		t.Fatal(err)
	}
	for name, opts := range map[string][]nats.Option{
		"anonymous":             nil,
		"edge, wrong password":  {nats.UserInfo("edge", "guess")},
		"daemon, no password":   {nats.UserInfo(DaemonUser, "")},
		"daemon, wrong":         {nats.UserInfo(DaemonUser, "guess")},
		"token":                 {nats.Token("guess")},
		"edge password as user": {nats.UserInfo(edgePassword(t, c), "")},
	} {
		nc, err := nats.Connect(c.ClientURL(), append(opts, nats.NoReconnect())...)
		if err == nil {
			nc.Close()
			t.Errorf("%s: connected; want an authorization error", name)
			continue
		}
		if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Errorf("%s: err = %v, want an authorization violation", name, err)
		}
	}
}

// The credentials are generated once, private to the daemon's user, and
// kept across restarts; a hand-written file is used, a weak or
// world-readable one refused.
func TestCredentialsGeneratedOnceAndPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "credentials")
	c1, err := LoadCredentials(dir, []string{"traefik-a", "traefik-b"})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("credentials dir mode = %v, %v; want 0700", fi.Mode().Perm(), err)
	}
	for _, f := range []string{DaemonPasswordFile(dir), EdgePasswordFile(dir, "traefik-a"), EdgePasswordFile(dir, "traefik-b")} {
		fi, err := os.Stat(f)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v, %v; want 0600", f, fi.Mode().Perm(), err)
		}
	}
	if !c1.Edges[0].Created || c1.Edges[0].Password == c1.Edges[1].Password || c1.Daemon == c1.Edges[0].Password || len(c1.Daemon) < minPasswordLength {
		t.Fatalf("credentials not distinct and fresh: %+v", c1)
	}
	c2, err := LoadCredentials(dir, []string{"traefik-a", "traefik-b"})
	if err != nil {
		t.Fatal(err)
	}
	if c2.Daemon != c1.Daemon || c2.Edges[1].Password != c1.Edges[1].Password || c2.Edges[0].Created {
		t.Fatal("a restart changed the credentials")
	}
	own := EdgePasswordFile(dir, "mine")
	if err := os.WriteFile(own, []byte("chosen-by-the-operator-0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c3, err := LoadCredentials(dir, []string{"mine"})
	if err != nil || c3.Edges[0].Password != "chosen-by-the-operator-0123" {
		t.Fatalf("operator's file: %+v, %v", c3, err)
	}
	for name, tc := range map[string]struct {
		content string
		mode    os.FileMode
		want    string
	}{
		"short":           {"short\n", 0o600, "fewer than"},
		"world readable":  {"long-enough-password-0123\n", 0o644, "readable by other users"},
		"with whitespace": {"long enough password 0123\n", 0o600, "whitespace"},
	} {
		d := t.TempDir()
		if err := os.WriteFile(EdgePasswordFile(d, "e"), []byte(tc.content), tc.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(EdgePasswordFile(d, "e"), tc.mode); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadCredentials(d, []string{"e"}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}

// Attack: an edge credential used to read the session and key buckets,
// forge edge facts or snoop on other traffic.
func TestEmbeddedEdgeAuthentication(t *testing.T) {
	ctx := ctxT(t)
	c := openWithEdgeAuth(t)
	if _, err := c.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "edge"}); err != nil {
		t.Fatal(err)
	}
	secrets, err := c.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "sessions"})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = secrets.Put(ctx, "s1", []byte(`{"refreshToken":"secret"}`))

	violations := make(chan error, 16)
	edge, err := nats.Connect(c.ClientURL(), nats.UserInfo("edge", edgePassword(t, c)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err }))
	if err != nil {
		t.Fatalf("edge user cannot connect: %v", err)
	}
	defer edge.Close()
	ejs, _ := jetstream.New(edge)

	// Refused: reading the session bucket, forging edge facts, snooping on
	// KV writes, on the daemon's replies and on other inboxes.
	shortCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := ejs.KeyValue(shortCtx, "sessions"); err == nil {
		t.Error("edge user could bind the sessions bucket")
	}
	if err := edge.Publish("$KV.edge.groups.x", []byte(`{"groups":["admins"],"at":1}`)); err != nil {
		t.Fatal(err)
	}
	forbidden := []string{"$KV.sessions.>", DaemonInboxPrefix + ".>", "$JS.API.>", "_INBOX.>", "_EDGEPASS.other.>"}
	for _, subj := range forbidden {
		if _, err := edge.SubscribeSync(subj); err != nil {
			t.Fatal(err)
		}
	}
	_ = edge.Flush()
	deadline := time.After(3 * time.Second)
	got := 0
	for got < len(forbidden)+1 {
		select {
		case err := <-violations:
			if strings.Contains(err.Error(), "Permissions Violation") {
				got++
			}
		case <-deadline:
			t.Fatalf("%d of %d forbidden operations refused", got, len(forbidden)+1)
		}
	}
	if e, err := secrets.Get(ctx, "s1"); err != nil || string(e.Value()) != `{"refreshToken":"secret"}` {
		t.Errorf("daemon read after edge activity: %v", err)
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
	beats, err := c.NC.SubscribeSync(natsedge.HeartbeatSubject("edge", "edge"))
	if err != nil {
		t.Fatal(err)
	}

	w, err := natsedge.Shared(natsedge.Config{URLs: []string{c.ClientURL()}, Bucket: "edge", User: "edge",
		PasswordFile: c.Credentials.Edges[0].File, ReplicaID: "plugin-test", Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	poll.Until(t, 10*time.Second, "the plugin watcher to sync the edge bucket as the edge user", func() bool {
		return w.State().Synced() && w.State().Revoked(sid, "", 1, time.Now())
	})
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
