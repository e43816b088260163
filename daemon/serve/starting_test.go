package serve

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/edgepass/edgepass/daemon/config"
	"github.com/edgepass/edgepass/daemon/internal/fakeidp"
	"github.com/edgepass/edgepass/daemon/internal/poll"
)

// externalNATS configures cfg for an external NATS server on a free port
// that nothing listens on yet, and returns the options to start it later.
func externalNATS(t *testing.T, cfg *config.Configuration, cfgDir string) *server.Options {
	t.Helper()
	host, portStr, _ := net.SplitHostPort(freeAddr(t))
	port, _ := strconv.Atoi(portStr)
	pw := filepath.Join(cfgDir, "nats.password")
	if err := os.WriteFile(pw, []byte("daemon-secret-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.NATS.Embedded.Enabled = false
	cfg.NATS.URLs = []string{"nats://" + net.JoinHostPort(host, portStr)}
	cfg.NATS.User, cfg.NATS.PasswordFile, cfg.NATS.Password = "edgepass", pw, "daemon-secret-0123456789" // config.Load reads the file; these tests bypass it
	return &server.Options{
		Host: host, Port: port, JetStream: true, StoreDir: t.TempDir(),
		Username: "edgepass", Password: "daemon-secret-0123456789",
		NoLog: true, NoSigs: true,
	}
}

// runNATS starts the nats-server opts configure and waits until it takes
// connections.
func runNATS(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		t.Fatal("nats-server did not start")
	}
	return ns
}

// TestNewServesNotReadyWhileNATSIsStarting: a daemon started before its
// NATS answers /healthz (alive), /readyz 503 with the reason, refuses
// logins with 503 + Retry-After, and becomes ready once NATS is up —
// instead of crash-looping on a first install.
func TestNewServesNotReadyWhileNATSIsStarting(t *testing.T) {
	idp := fakeidp.Start("edgepass", fakeidp.User{Subject: "x"})
	defer idp.Close()
	dir := t.TempDir()
	cfg := testConfig(t, idp, dir)
	opts := externalNATS(t, cfg, dir)
	cfg.Admin.Listen = freeAddr(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		s   *Server
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := New(ctx, cfg, nil)
		done <- result{s, err}
	}()

	public, admin := "http://"+cfg.Listen, "http://"+cfg.Admin.Listen
	poll.Until(t, 10*time.Second, "readyz names the missing dependency", func() bool {
		code, _, body := get(admin+"/readyz", nil)
		return code == 503 && strings.Contains(body, "waiting for NATS")
	})
	if code, _, _ := get(public+"/healthz", nil); code != 200 {
		t.Errorf("healthz while starting = %d, want 200 (alive, not ready)", code)
	}
	code, hdr, _ := get(public+"/login?rd=http://app.example.com/", nil)
	if code != 503 || hdr.Get("Retry-After") == "" {
		t.Errorf("login while starting = %d Retry-After=%q, want 503 with Retry-After", code, hdr.Get("Retry-After"))
	}
	if code, _, _ := get(admin+"/healthz", nil); code != 200 {
		t.Errorf("admin healthz while starting = %d, want 200", code)
	}
	if code, _, _ := get(admin+"/v1/sessions", map[string]string{"Authorization": "Bearer " + adminToken}); code != 503 {
		t.Errorf("admin API while starting = %d, want 503", code)
	}

	ns := runNATS(t, opts)
	defer ns.Shutdown()

	var r result
	select {
	case r = <-done:
	case <-time.After(40 * time.Second):
		t.Fatal("New did not return after NATS started")
	}
	if r.err != nil {
		t.Fatalf("New after NATS started: %v", r.err)
	}
	go func() { _ = r.s.Serve(ctx) }()
	poll.Until(t, 10*time.Second, "ready once NATS is up", func() bool {
		code, _, _ := get(admin+"/readyz", nil)
		return code == 200
	})
	if code, _, _ := get(public+"/login?rd=http://app.example.com/", nil); code != 302 {
		t.Errorf("login once ready = %d, want 302 to the IdP", code)
	}
}

// TestNewFailsFastOnNATSAuthorization: a wrong NATS password is not
// "still starting" — waiting would hide a configuration error forever.
func TestNewFailsFastOnNATSAuthorization(t *testing.T) {
	idp := fakeidp.Start("edgepass", fakeidp.User{Subject: "x"})
	defer idp.Close()
	dir := t.TempDir()
	cfg := testConfig(t, idp, dir)
	opts := externalNATS(t, cfg, dir)
	opts.Password = "another-password-000000"
	ns := runNATS(t, opts)
	defer ns.Shutdown()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	began := time.Now()
	_, err := New(ctx, cfg, nil)
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("New with a wrong NATS password = %v, want an authorization error", err)
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("New took %v to report a wrong password; it should not wait for NATS", took)
	}
}

// get is do without t: it may run before the listener is bound.
func get(u string, hdr map[string]string) (int, http.Header, string) {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	client := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}
