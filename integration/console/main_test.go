// Package console tests the administrators' web console in a real browser:
// headless Chromium (Debian's chromium package) driven with chromedp
// against a whole stack — two Traefik replicas with the plugin, the daemon
// with its embedded NATS, the OIDC provider.
//
// Run: cd integration && go test -count=1 ./console
// Screenshots of every page (375 px and 1280 px wide) go to
// $EDGEPASS_ARTIFACTS, else integration/console/artifacts.
// EDGEPASS_CHROMIUM names the browser binary (default: chromium on PATH).
// Without a browser the tests skip locally and fail in CI (CI set).
package console

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/edgepass/edgepass/integration/harness"
)

var (
	workDir   string
	stack     *harness.Stack
	artifacts string
	// readOnlyToken is the named admin token "monitor" (read-only).
	readOnlyToken = harness.RandomSecret(24)
	// chromium is the browser binary ("" when there is none).
	chromium string
	// browserCtx is the one Chromium every test shares (each test opens
	// its own tab or incognito context in it).
	browserCtx context.Context
)

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

func TestMain(m *testing.M) { os.Exit(run(m)) }

// findChromium returns the browser binary, or "" when none is installed.
func findChromium() string {
	if p := os.Getenv("EDGEPASS_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

func run(m *testing.M) int {
	start := time.Now()
	if chromium = findChromium(); chromium == "" {
		if os.Getenv("CI") != "" {
			logf("console: no Chromium found (install Debian's chromium package: apt-get install -y chromium; .ci/run does); CI must run the browser tests")
			return 1
		}
		logf("console: SKIPPING the browser tests: no Chromium found (apt-get install -y chromium, or set EDGEPASS_CHROMIUM)")
		return m.Run() // each test skips with the same message
	}
	artifacts = os.Getenv("EDGEPASS_ARTIFACTS")
	if artifacts == "" {
		repo, err := harness.RepoRoot()
		if err != nil {
			logf("console: %v", err)
			return 1
		}
		artifacts = filepath.Join(repo, "integration", "console", "artifacts")
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		logf("console: artifacts: %v", err)
		return 1
	}
	var err error
	if workDir, err = os.MkdirTemp("", "edgepass-console-"); err != nil {
		logf("console: %v", err)
		return 1
	}
	keep := os.Getenv("EDGEPASS_E2E_KEEP") != ""
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	bins, err := harness.Build(ctx, harness.BuildOptions{OutDir: filepath.Join(workDir, "bin"), Logf: logf})
	cancel()
	if err != nil {
		logf("console: cannot build the stack: %v", err)
		return 1
	}
	tokenFile := filepath.Join(workDir, "monitor.token")
	if err := os.WriteFile(tokenFile, []byte(readOnlyToken+"\n"), 0o600); err != nil {
		logf("console: %v", err)
		return 1
	}
	built := time.Now()
	stack, err = harness.StartStack(harness.StackOptions{
		Name: "console", Dir: filepath.Join(workDir, "stack"), Bins: bins, Replicas: 2, Logf: logf,
		DaemonAdminYAML: fmt.Sprintf(`  tokens:
    - {name: monitor, file: %q, readOnly: true}
  console:
    enabled: true
    groups: [admins]
`, tokenFile),
	})
	if err != nil {
		logf("console: cannot start the stack: %v\nwork directory kept: %s", err, workDir)
		return 1
	}
	logf("console: stack ready in %s (build %s): traefik %s and %s, console %s/console/",
		time.Since(built).Round(time.Millisecond), built.Sub(start).Round(time.Millisecond),
		stack.Traefiks[0].URL, stack.Traefiks[1].URL, stack.Daemon.AdminURL)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 900))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	var cancelBrowser context.CancelFunc
	browserCtx, cancelBrowser = chromedp.NewContext(allocCtx)
	browserStart := time.Now()
	if err := chromedp.Do(browserCtx); err != nil { // starts the browser
		logf("console: cannot start %s: %v", chromium, err)
		cancelBrowser()
		cancelAlloc()
		stack.Close()
		return 1
	}
	logf("console: %s started in %s; screenshots in %s", chromium, time.Since(browserStart).Round(time.Millisecond), artifacts)

	testsStart := time.Now()
	code := m.Run()
	logf("console: browser tests took %s (whole package %s)", time.Since(testsStart).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	cancelBrowser()
	cancelAlloc()
	stack.Close()
	if code != 0 || keep {
		logf("console: work directory (configs and logs) kept: %s", workDir)
	} else {
		os.RemoveAll(workDir)
	}
	return code
}
