package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/edgepass/edgepass/daemon/config"
	"github.com/edgepass/edgepass/daemon/internal/fakeidp"
	"github.com/edgepass/edgepass/daemon/internal/poll"
	"github.com/edgepass/edgepass/plugin/natsedge"
	"github.com/edgepass/edgepass/plugin/token"
)

const adminToken = "test-admin-token-0123456789"

func testConfig(t *testing.T, idp *fakeidp.IdP, dataDir string) *config.Configuration {
	t.Helper()
	addr := freeAddr(t)
	c, err := config.Load([]string{
		"--listen=" + addr,
		"--publicURL=http://" + addr,
		"--admin.listen=127.0.0.1:1", // replaced below: validation refuses equal listeners
		"--oidc.issuer=" + idp.Issuer(),
		"--oidc.clientID=edgepass",
		"--session.allowedDomains=127.0.0.1,*.example.com",
		"--session.cookieSecure=false",
		"--nats.embedded.listen=127.0.0.1:0",
		"--dataDir=" + dataDir,
		"--admin.token=" + adminToken,
		"--log.level=debug",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Admin.Listen = "127.0.0.1:0"
	return c
}

// freeAddr finds a free loopback port: the publicURL must name the bound
// address before the daemon starts.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// running is a daemon served in the background.
type running struct {
	*Server
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, cfg *config.Configuration) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := New(ctx, cfg, nil)
	if err != nil {
		cancel()
		t.Fatalf("New: %v", err)
	}
	r := &running{Server: srv, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- srv.Serve(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("Serve did not return after cancel")
	}
}

// login signs the fake IdP's user in through the daemon's /login and
// returns the session cookie.
func (r *running) login(t *testing.T) *http.Cookie {
	t.Helper()
	cookie, _, err := fakeidp.Login("http://"+r.PublicAddr(), "", r.cfg.Session.CookieName)
	if err != nil {
		t.Fatal(err)
	}
	return cookie
}

func (r *running) url(path string) string   { return "http://" + r.PublicAddr() + path }
func (r *running) admin(path string) string { return "http://" + r.AdminAddr() + path }

func do(t *testing.T, method, u string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(method, u, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}

func TestServeWiring(t *testing.T) {
	idp := fakeidp.Start("edgepass", fakeidp.User{Subject: "u-1", Email: "alice@example.com", Name: "Alice", Username: "alice", Groups: []string{"staff"}})
	defer idp.Close()
	dir := t.TempDir()
	cfg := testConfig(t, idp, dir)
	d := start(t, cfg)
	bearer := map[string]string{"Authorization": "Bearer " + adminToken}

	// Public listener basics.
	if code, _, _ := do(t, "GET", d.url("/healthz"), nil); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	code, _, body := do(t, "GET", d.url("/.well-known/jwks.json"), nil)
	ks, err := token.ParseJWKS([]byte(body))
	if code != 200 || err != nil || ks.Len() != 1 {
		t.Fatalf("jwks: %d %v %s", code, err, body)
	}
	if code, _, body := do(t, "GET", d.admin("/readyz"), nil); code != 200 {
		t.Errorf("/readyz = %d %s, want ready (NATS up, IdP reachable)", code, body)
	}

	// A real login through the fake IdP.
	cookie, resp, err := fakeidp.Login("http://"+d.PublicAddr(), "https://app.example.com/x", cfg.Session.CookieName)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	if loc := resp.Header.Get("Location"); loc != "https://app.example.com/x" {
		t.Errorf("after login redirected to %q", loc)
	}

	// /verify accepts the cookie and names the user.
	verifyReq := map[string]string{"Cookie": cfg.Session.CookieName + "=" + cookie.Value, "X-Forwarded-Proto": "https", "X-Forwarded-Host": "app.example.com", "X-Forwarded-Uri": "/x"}
	code, hdr, _ := do(t, "GET", d.url("/verify"), verifyReq)
	if code != 200 || hdr.Get("X-Auth-User") != "alice" || hdr.Get("X-Auth-Groups") != "staff" {
		t.Fatalf("/verify = %d %v", code, hdr)
	}
	code, hdr, statusBody := do(t, "GET", d.url("/"), map[string]string{"Cookie": verifyReq["Cookie"]})
	if code != 200 || !strings.Contains(statusBody, "alice") {
		t.Errorf("status page = %d, does not name the user", code)
	}
	// Attack: frame the status page (clickjack its sign-out button) or cache it.
	if csp := hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "form-action 'self'") ||
		hdr.Get("X-Frame-Options") != "DENY" || hdr.Get("Cache-Control") != "no-store" {
		t.Errorf("status page headers: %v", hdr)
	}

	// The admin API sees the session.
	code, _, body = do(t, "GET", d.admin("/api/v1/sessions?user=u-1"), bearer)
	var list struct {
		Sessions []struct {
			ID           string `json:"id"`
			RefreshToken string `json:"refreshToken"`
		} `json:"sessions"`
	}
	if err := json.Unmarshal([]byte(body), &list); code != 200 || err != nil || len(list.Sessions) != 1 {
		t.Fatalf("sessions list: %d %s", code, body)
	}
	if list.Sessions[0].RefreshToken != "" {
		t.Error("admin API leaks the refresh token")
	}
	sid := list.Sessions[0].ID

	// Group change through the admin API reaches /verify via the edge bucket.
	req, _ := http.NewRequest("PUT", d.admin("/api/v1/users/u-1/groups"), strings.NewReader(`{"groups":["admins"]}`))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode/100 != 2 {
		t.Fatalf("set groups: %v %v", resp, err)
	}
	poll.Until(t, 10*time.Second, "group override at /verify", func() bool {
		_, hdr, _ := do(t, "GET", d.url("/verify"), verifyReq)
		return hdr.Get("X-Auth-Groups") == "admins"
	})

	// Revoking the session through the admin API reaches /verify.
	if code, _, body := do(t, "DELETE", d.admin("/api/v1/sessions/"+sid), bearer); code/100 != 2 {
		t.Fatalf("revoke session: %d %s", code, body)
	}
	poll.Until(t, 10*time.Second, "revocation at /verify", func() bool {
		code, _, _ := do(t, "GET", d.url("/verify"), verifyReq)
		return code == http.StatusUnauthorized
	})

	// Key rotation publishes the new key at the JWKS endpoint.
	if code, _, body := do(t, "POST", d.admin("/api/v1/keys/rotate"), bearer); code != 200 {
		t.Fatalf("rotate: %d %s", code, body)
	}
	_, _, body = do(t, "GET", d.url("/.well-known/jwks.json"), nil)
	if ks, _ := token.ParseJWKS([]byte(body)); ks.Len() != 2 {
		t.Errorf("after rotation the JWKS holds %d keys, want 2", ks.Len())
	}

	// An edge heartbeat shows up at /api/v1/edges.
	edge := d.nats.Credentials.Edges[0]
	nc, err := nats.Connect(d.NATSURL(), nats.UserInfo(edge.Name, edge.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	hb := fmt.Sprintf(`{"replica":"traefik-0","bucket":%q,"seq":3,"synced":true,"heardAgoMs":5,"at":%d}`, cfg.NATS.EdgeBucket, time.Now().UnixMilli())
	poll.Until(t, 10*time.Second, "edge listed", func() bool {
		_ = nc.Publish(natsedge.HeartbeatSubject(cfg.NATS.EdgeBucket, edge.Name), []byte(hb))
		_, _, body := do(t, "GET", d.admin("/api/v1/edges"), bearer)
		return strings.Contains(body, `"traefik-0"`)
	})

	// The admin API refuses a missing or wrong token.
	if code, _, _ := do(t, "GET", d.admin("/api/v1/sessions"), map[string]string{"Authorization": "Bearer wrong"}); code != 401 {
		t.Errorf("wrong admin token: %d, want 401", code)
	}
	// The public listener does not serve the admin API.
	if code, _, _ := do(t, "GET", d.url("/api/v1/sessions"), bearer); code != 404 {
		t.Errorf("admin API on the public listener: %d, want 404", code)
	}
}

func TestServeRestartKeepsSessionsAndKeys(t *testing.T) {
	idp := fakeidp.Start("edgepass", fakeidp.User{Subject: "u-2", Username: "bob"})
	defer idp.Close()
	dir := t.TempDir()
	cfg := testConfig(t, idp, dir)

	d := start(t, cfg)
	cookie := d.login(t)
	kid := d.ring.KeyID()
	d.stop(t)

	d2 := start(t, cfg) // same addresses: the issuer is the publicURL
	if d2.ring.KeyID() != kid {
		t.Errorf("signing key changed across restart: %q -> %q", kid, d2.ring.KeyID())
	}
	code, hdr, _ := do(t, "GET", d2.url("/verify"), map[string]string{"Authorization": "Bearer " + cookie.Value})
	if code != 200 || hdr.Get("X-Auth-User") != "bob" {
		t.Errorf("/verify after restart = %d %v", code, hdr)
	}
	list, err := d2.store.List(context.Background(), "u-2")
	if err != nil || len(list) != 1 {
		t.Errorf("sessions after restart: %v %v", list, err)
	}
}

func TestNewFailsClearly(t *testing.T) {
	idp := fakeidp.Start("edgepass", fakeidp.User{Subject: "x"})
	defer idp.Close()
	first := start(t, testConfig(t, idp, t.TempDir()))

	cfg := testConfig(t, idp, t.TempDir())
	cfg.Listen = first.PublicAddr() // already taken
	if _, err := New(context.Background(), cfg, nil); err == nil || !strings.Contains(err.Error(), "already in use") || !strings.Contains(err.Error(), "--listen") {
		t.Errorf("New with a busy port = %v, want an error naming the listen setting", err)
	}
	cfg = testConfig(t, idp, t.TempDir())
	cfg.NATS.Embedded.Enabled = false
	cfg.NATS.URLs = []string{"nats://127.0.0.1:1"}
	// Unreachable NATS is waited for (a first install's NATS may still be
	// starting); the context bounds the wait and the error keeps the cause.
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if _, err := New(ctx, cfg, nil); err == nil || !strings.Contains(err.Error(), "nats: cannot connect") {
		t.Errorf("New with unreachable NATS = %v", err)
	}
}
