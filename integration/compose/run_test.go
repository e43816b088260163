package compose

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/integration/harness"
)

// TestQuickstartRuns runs the quickstart's own files with real binaries:
// the daemon with deploy/compose/edgepass.yml, Traefik (v3.6, built from
// source, the plugin loaded from this checkout) with dynamic.yml, and the
// edge-credentials and Traefik entrypoint scripts of docker-compose.yml
// under /bin/sh; only host names, ports and container paths are rewritten
// (to 127.0.0.1 and a temporary directory). It signs in through Traefik as
// Dex's user and checks what the app receives.
//
// Dex does not run here: it does not build from the Go module proxy and no
// container runtime is available. The test's OpenID provider
// (integration/oidcprovider) stands in for it with dex.yaml's client id,
// secret, redirect URI and users; the echo server stands in for whoami.
func TestQuickstartRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Traefik, the daemon and an OpenID provider")
	}
	start := time.Now()
	q := loadQuickstart(t)
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bins, err := harness.Build(ctx, harness.BuildOptions{OutDir: filepath.Join(work, "bin"), Logf: t.Logf})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	t.Logf("binaries ready after %s", time.Since(start).Round(time.Millisecond))
	logDir := filepath.Join(work, "logs")

	port := func() int {
		p, err := harness.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	appPort, apiPort, daemonPort, adminPort, natsPort, providerPort, echoPort := port(), port(), port(), port(), port(), port(), port()
	local := func(p int) string { return fmt.Sprintf("127.0.0.1:%d", p) }
	dataDir := filepath.Join(work, "daemon-data")
	edgeDir := filepath.Join(work, "edge")
	if err := os.MkdirAll(edgeDir, 0o700); err != nil {
		t.Fatal(err)
	}

	// The quickstart's addresses, as each file names them, and the test's.
	pub, _ := url.Parse(q.daemon.PublicURL)
	app, _ := url.Parse(q.daemon.Session.DefaultRedirect)
	rw := &rewriter{
		urls: map[string]string{
			"http://" + pub.Host: "http://" + local(daemonPort), // publicURL, loginURL, issuer
			"http://" + app.Host: "http://" + local(appPort),    // the app (Traefik's web entrypoint)
			q.dex.Issuer:         "http://" + local(providerPort),
			fmt.Sprintf("nats://%s:%s", svcDaemon, portStr(t, q.daemon.NATS.Embedded.Listen)): "nats://" + local(natsPort),
			fmt.Sprintf("http://%s:%d", svcApp, whoamiPort):                                   "http://" + local(echoPort),
		},
		addrs: map[string]string{
			q.daemon.Listen:               local(daemonPort),
			q.daemon.NATS.Embedded.Listen: local(natsPort),
			q.daemon.Admin.Listen:         local(adminPort),
		},
		hosts: map[string]string{pub.Hostname(): "127.0.0.1"},
		paths: map[string]string{
			q.daemon.DataDir: dataDir,
			// Mount targets of the edge volume, in Traefik and in edge-credentials.
			q.mountTarget(t, svcTraefik, "edge"):                              edgeDir,
			q.mountTarget(t, svcEdge, "edge"):                                 edgeDir,
			q.mountTarget(t, svcEdge, "edgepass-data"):                        dataDir,
			q.mountTarget(t, svcTraefik, filepath.Join(q.dir, "traefik.yml")): filepath.Join(work, "traefik", "traefik.yml"),
		},
	}

	// Dex's stand-in: the client secret Dex gets from docker-compose.yml,
	// the redirect URI and the users of dex.yaml.
	client := q.dex.StaticClients[0]
	if len(q.dex.StaticClients) != 1 || client.ID != "edgepass" {
		t.Fatalf("dex.yaml: the stand-in provider knows one client, edgepass; dex.yaml has %d, the first %q", len(q.dex.StaticClients), client.ID)
	}
	var redirects []string
	for _, u := range client.RedirectURIs {
		v, err := rw.value(u)
		if err != nil {
			t.Fatal(err)
		}
		redirects = append(redirects, v)
	}
	usersFile := filepath.Join(work, "users.json")
	users := map[string]map[string]any{}
	for _, u := range q.dex.StaticPasswords {
		// The stand-in signs users in by login name, which is also their
		// sub and preferred_username; Dex asks for the email and sends
		// preferredUsername as preferred_username.
		users[u.PreferredUsername] = map[string]any{"password": quickstartUsers[u.Email], "name": u.Name, "email": u.Email, "groups": u.Groups}
	}
	writeJSON(t, usersFile, users)
	t.Setenv("USERS_FILE", usersFile)
	provider, err := harness.StartProvider(harness.ProviderSpec{
		Node: bins.Node, Dir: bins.Provider, Port: providerPort,
		ClientSecret: q.envValue(t, svcDex, client.SecretEnv),
		RedirectURIs: redirects, LogDir: logDir, Name: "dex-stand-in",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = provider.Stop(5 * time.Second) })

	echo, err := harness.StartEcho(bins.Echo, echoPort, false, logDir, "whoami-stand-in")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = echo.Stop(5 * time.Second) })

	// The daemon: edgepass.yml rewritten, with the container's environment.
	daemonCfg, err := rw.yaml(q.daemonRaw)
	if err != nil {
		t.Fatalf("edgepass.yml: %v", err)
	}
	cfgPath := filepath.Join(work, "edgepass.yml")
	if err := os.WriteFile(cfgPath, daemonCfg, 0o600); err != nil {
		t.Fatal(err)
	}
	daemon, err := harness.StartProc(harness.ProcSpec{
		Name: "edgepass", Path: bins.Daemon, Args: []string{"serve", "--configFile=" + cfgPath},
		Dir: work, Env: q.environ(t, svcDaemon), LogPath: filepath.Join(logDir, "edgepass.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = daemon.Stop(10 * time.Second) })
	adminToken := q.envValue(t, svcDaemon, "EDGEPASS_ADMIN_TOKEN")
	if err := daemon.WaitReady(local(daemonPort), 30*time.Second, func(ctx context.Context) error {
		if err := harness.HTTPOK(ctx, "http://"+local(daemonPort)+"/healthz", nil); err != nil {
			return err
		}
		return harness.HTTPOK(ctx, "http://"+local(adminPort)+"/readyz", http.Header{"Authorization": {"Bearer " + adminToken}})
	}); err != nil {
		t.Fatal(err)
	}

	// edge-credentials' script, as the container runs it.
	if out, err := exec.Command("/bin/sh", "-c", rw.script(q.script(t, svcEdge))).CombinedOutput(); err != nil {
		t.Fatalf("edge-credentials' script: %v\n%s", err, out)
	}
	// Traefik's entrypoint script, with a traefik on PATH that reports
	// what the real one would get: the anchor variable and the arguments.
	fake := filepath.Join(work, "fakebin")
	if err := os.MkdirAll(fake, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fake, "traefik"), []byte("#!/bin/sh\nprintf '%s\\n' \"$EDGEPASS_TRUST_ANCHOR\" \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", "-c", rw.script(q.script(t, svcTraefik)))
	cmd.Env = append(os.Environ(), "PATH="+fake+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("traefik's entrypoint script: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	anchor, err := os.ReadFile(filepath.Join(dataDir, "trust-anchor.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 || lines[0] != strings.TrimSpace(string(anchor)) || lines[1] != "--configFile="+rw.paths[q.mountTarget(t, svcTraefik, filepath.Join(q.dir, "traefik.yml"))] {
		t.Fatalf("traefik's entrypoint ran traefik with EDGEPASS_TRUST_ANCHOR and arguments %q; want the daemon's anchor %q and --configFile", lines, anchor)
	}
	t.Setenv("EDGEPASS_TRUST_ANCHOR", lines[0])

	// Traefik with dynamic.yml rewritten; the file provider renders the
	// trust anchor's template.
	dynamic, err := rw.yaml(q.dynamicRaw)
	if err != nil {
		t.Fatalf("dynamic.yml: %v", err)
	}
	var routers []string
	for name := range q.dynamic.HTTP.Routers {
		routers = append(routers, name+"@file")
	}
	traefik, err := harness.StartTraefik(harness.TraefikSpec{
		Bin: bins.Traefik, Repo: bins.Repo, Dir: filepath.Join(work, "traefik"), Name: "traefik",
		Port: appPort, APIPort: apiPort, LogDir: logDir, Dynamic: string(dynamic), Routers: routers,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = traefik.Stop(10 * time.Second) })
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range []*harness.Proc{provider.Proc, echo.Proc, daemon, traefik.Proc} {
				t.Logf("%s log (%s):\n%s", p.Spec.Name, p.Spec.LogPath, p.Tail(25))
			}
		}
	})
	t.Logf("stack ready after %s", time.Since(start).Round(time.Millisecond))

	appURL := "http://" + local(appPort) + "/"
	// Without a session: to the daemon's login, once the edge has synced
	// with the daemon's NATS (503 until then: requireSync).
	b := harness.NewBrowser(provider.Issuer)
	var resp *http.Response
	var body []byte
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		req, _ := harness.NavRequest("GET", appURL, nil)
		if resp, body, err = b.Do(req); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
			break
		}
	}
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, "http://"+local(daemonPort)+"/login?rd=") {
		t.Fatalf("anonymous request: %d Location %q, want 302 to the daemon's /login: %.300s", resp.StatusCode, loc, body)
	}
	t.Logf("edge synced after %s", time.Since(start).Round(time.Millisecond))

	// Alice signs in through Traefik; the app sees her identity.
	alice := q.dex.StaticPasswords[0]
	b, _, err = harness.SignInAt(provider.Issuer, appURL, alice.PreferredUsername, quickstartUsers[alice.Email])
	if err != nil {
		t.Fatalf("sign in as %s: %v", alice.Email, err)
	}
	for _, path := range []string{"", "admins"} {
		page, err := b.Navigate(appURL + path)
		if err != nil {
			t.Fatal(err)
		}
		seen, err := harness.DecodeEchoed(page.Body)
		if err != nil || page.Status != http.StatusOK {
			t.Fatalf("/%s as %s: status %d: %v", path, alice.Email, page.Status, err)
		}
		p := q.plugin(t, "sso")
		want := map[string]string{
			p.UserHeader:   alice.PreferredUsername,
			p.EmailHeader:  alice.Email,
			p.GroupsHeader: strings.Join(alice.Groups, ","),
			p.NameHeader:   alice.Name,
		}
		for h, v := range want {
			if got := seen.Get(h); got != v {
				t.Errorf("/%s: the app got %s: %q, want %q", path, h, got, v)
			}
		}
	}

	// Bob may use the app, not /admins.
	bob := q.dex.StaticPasswords[1]
	b, _, err = harness.SignInAt(provider.Issuer, appURL, bob.PreferredUsername, quickstartUsers[bob.Email])
	if err != nil {
		t.Fatalf("sign in as %s: %v", bob.Email, err)
	}
	page, err := b.Navigate(appURL + "admins")
	if err != nil {
		t.Fatal(err)
	}
	if page.Status != http.StatusForbidden {
		t.Errorf("/admins as %s: status %d, want 403", bob.Email, page.Status)
	}
	t.Logf("done after %s", time.Since(start).Round(time.Millisecond))
}

// portStr is the port of a host:port listen address, as text.
func portStr(t *testing.T, addr string) string {
	t.Helper()
	return fmt.Sprint(portOf(t, addr))
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
