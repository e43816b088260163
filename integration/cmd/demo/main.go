// Command demo runs a complete edgepass installation on 127.0.0.1: Traefik
// with the plugin, the daemon with its embedded NATS, a local OpenID Connect
// provider with two demo users, and a demo app that shows the identity
// headers it receives. `make demo` runs it; Ctrl-C stops everything.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/edgepass/edgepass/integration/harness"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run() error {
	var (
		traefikPort  = flag.Int("traefik-port", 8080, "Traefik entry point (the URL to open)")
		daemonPort   = flag.Int("daemon-port", 8000, "daemon browser listener (login, logout, /verify)")
		adminPort    = flag.Int("admin-port", 8001, "daemon admin API")
		providerPort = flag.Int("provider-port", 9000, "OpenID Connect provider")
		natsPort     = flag.Int("nats-port", 4222, "embedded NATS (the plugin connects here)")
		echoPort     = flag.Int("app-port", 0, "demo app (0 = any free port)")
		dir          = flag.String("dir", "", "working directory for configs, data and logs (default <repo>/demo-data)")
		adminToken   = flag.String("admin-token", "", "admin API token (default: random, printed)")
		smoke        = flag.Bool("smoke", false, "start, sign in once as alice, print the result and exit (a check that the demo works)")
	)
	flag.Parse()

	repo, err := harness.RepoRoot()
	if err != nil {
		return err
	}
	if *dir == "" {
		*dir = filepath.Join(repo, "demo-data")
	}
	if *adminToken == "" {
		*adminToken = harness.RandomSecret(18)
	}
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	// Logs of an earlier run would confuse; data (sessions, keys) is kept.
	_ = os.RemoveAll(filepath.Join(*dir, "logs"))

	logf("demo: building the daemon and the demo app, finding Traefik (the first run builds Traefik: about 5 minutes)")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	bins, err := harness.Build(ctx, harness.BuildOptions{OutDir: filepath.Join(*dir, "bin"), Logf: logf})
	cancel()
	if err != nil {
		return err
	}

	logf("demo: starting the provider, the daemon (embedded NATS), the demo app and Traefik")
	stack, err := harness.StartStack(harness.StackOptions{
		Name:     "demo",
		Dir:      *dir,
		Bins:     bins,
		Replicas: 1,
		EchoHTML: true,
		Ports: harness.Ports{
			Traefik:  []int{*traefikPort},
			Daemon:   *daemonPort,
			Admin:    *adminPort,
			Provider: *providerPort,
			NATS:     *natsPort,
			Echo:     *echoPort,
		},
		AdminToken: *adminToken,
		Logf:       logf,
	})
	if err != nil {
		return fmt.Errorf("demo: %w\n(ports busy? choose others with -traefik-port, -daemon-port, -admin-port, -provider-port, -nats-port)", err)
	}
	defer stack.Close()

	if *smoke {
		return smokeTest(stack)
	}

	tr := stack.Traefiks[0].URL
	cliBase := fmt.Sprintf("%s --admin.url=%s --admin.token=%s", bins.Daemon, stack.Daemon.AdminURL, stack.Opts.AdminToken)
	anchor, _ := stack.Daemon.TrustAnchor()
	fmt.Printf(`
edgepass demo is running.

  Open             %[1]s/
  Sign in as       alice / alice-password   (groups: staff, admins)
               or  bob / bob-password       (groups: staff)
  Admins only      %[1]s/admins/   (bob gets 403)
  Public page      %[1]s/public/   (no sign-in)
  Verified         %[1]s/asserted/ (the app verifies edgepass's signed identity
                   assertion with package assertion and the daemon's JWKS)
  Sign out         %[2]s/logout

  List sessions    %[3]s
  Revoke one       %[4]s -- <sid>
  Give bob admins  %[5]s -- bob staff,admins

  Machine clients on %[1]s/machine/ (API route: service tokens and IdP
  access tokens, Authorization: Bearer):
    service token  %[12]s -- robot
    IdP token      curl -s -u robot:%[13]s -d grant_type=client_credentials \
                     -d resource=%[14]s %[7]s/token
    then           curl -H "Authorization: Bearer <token>" %[1]s/machine/items

  Daemon status %[2]s/  ·  admin API %[6]s  ·  provider %[7]s
  NATS             nats://127.0.0.1:%[8]d (authentication required; Traefik logs in as
                   user edge with passwordFile %[10]s)
  Trust anchor     %[11]s (the plugin's trustAnchors)
  Logs             %[9]s

Press Ctrl-C to stop.
`, tr, stack.Daemon.PublicURL,
		strings.Replace(cliBase, " --admin.url", " sessions list --admin.url", 1),
		strings.Replace(cliBase, " --admin.url", " sessions revoke --admin.url", 1),
		strings.Replace(cliBase, " --admin.url", " groups set --admin.url", 1),
		stack.Daemon.AdminURL, stack.Provider.Issuer, stack.Opts.Ports.NATS, stack.LogDir,
		stack.Daemon.EdgePasswordFile(harness.DefaultEdgeName), anchor,
		strings.Replace(cliBase, " --admin.url", " tokens create --audiences="+harness.MachineAudience+" --groups=robots --admin.url", 1),
		stack.Opts.ClientSecret, harness.MachineResource)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	for {
		select {
		case <-sig:
			fmt.Println("\ndemo: stopping")
			return nil
		case <-time.After(time.Second):
			for _, p := range stack.Procs() {
				if ok, err := p.Exited(); ok {
					return fmt.Errorf("demo: %s stopped unexpectedly (%v); last log lines:\n%s", p.Spec.Name, err, p.Tail(20))
				}
			}
		}
	}
}

// smokeTest signs in as alice through Traefik and checks the demo page shows
// her identity.
func smokeTest(stack *harness.Stack) error {
	b := harness.NewBrowser(stack.Provider.Issuer)
	start := stack.Traefiks[0].URL + "/"
	page, _, err := b.SignIn(start, harness.AliceUser, harness.AlicePassword)
	if err != nil {
		return fmt.Errorf("demo smoke test: %w", err)
	}
	if page.URL.String() != start || page.Status != http.StatusOK || !strings.Contains(string(page.Body), "alice@example.com") {
		return fmt.Errorf("demo smoke test: sign-in did not end on the demo page showing alice:\n%s\n%.500s", page.Trace(), page.Body)
	}
	fmt.Println("demo smoke test: signed in as alice; the demo page shows her identity headers")
	// The verifying backend: the same session on the assertion route.
	req, err := harness.NavRequest("GET", stack.Traefiks[0].URL+harness.PathAsserted+"/", nil)
	if err != nil {
		return err
	}
	resp, body, err := b.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Verified identity") || !strings.Contains(string(body), "alice@example.com") {
		return fmt.Errorf("demo smoke test: the app did not verify alice's identity assertion: %v %.500s", err, body)
	}
	fmt.Println("demo smoke test: the app verified alice's signed identity assertion")
	return nil
}
