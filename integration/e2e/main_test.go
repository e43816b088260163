// Package e2e is edgepass's end-to-end suite: real Traefik v3.6.12 loading
// the plugin from source, real NATS (the daemon's embedded server, and an
// external nats-server with restricted edge permissions), the real daemon
// binary and a real OpenID Connect provider, driven like a browser and like
// an API client.
//
// Run: cd integration && go test -count=1 -p 1 -timeout 20m ./e2e
// EDGEPASS_E2E_KEEP=1 keeps the work directory (configs and logs).
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/edgepass/edgepass/integration/harness"
)

var (
	workDir string
	bins    *harness.Binaries
	// stack1: daemon with embedded NATS, two Traefik replicas.
	stack1 *harness.Stack

	// stack2: daemon and edges on an external nats-server (edges through a
	// proxy a test can cut), started by the first test that needs it.
	stack2Once sync.Once
	stack2     *harness.Stack
	stack2Err  error
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

func run(m *testing.M) int {
	var err error
	workDir, err = os.MkdirTemp("", "edgepass-e2e-")
	if err != nil {
		logf("e2e: %v", err)
		return 1
	}
	keep := os.Getenv("EDGEPASS_E2E_KEEP") != ""
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	bins, err = harness.Build(ctx, harness.BuildOptions{OutDir: filepath.Join(workDir, "bin"), NATSServer: true, Logf: logf})
	cancel()
	if err != nil {
		logf("e2e: cannot build the stack: %v", err)
		return 1
	}
	stack1, err = harness.StartStack(harness.StackOptions{
		Name: "stack1", Dir: filepath.Join(workDir, "stack1"), Bins: bins, Replicas: 2, Logf: logf,
	})
	if err != nil {
		logf("e2e: cannot start the shared stack (embedded NATS): %v", err)
		keep = true
		logf("e2e: work directory kept: %s", workDir)
		return 1
	}
	logf("e2e: stack1 ready after %s: traefik %s and %s, daemon %s, provider %s",
		time.Since(start).Round(time.Millisecond), stack1.Traefiks[0].URL, stack1.Traefiks[1].URL, stack1.Daemon.PublicURL, stack1.Provider.Issuer)

	code := m.Run()

	stack1.Close()
	if stack2 != nil {
		stack2.Close()
	}
	if code != 0 || keep {
		logf("e2e: work directory (configs and logs) kept: %s", workDir)
	} else {
		os.RemoveAll(workDir)
	}
	logf("e2e: suite took %s", time.Since(start).Round(time.Second))
	return code
}

// external returns the external-NATS stack, starting it on first use; a
// failure to start fails the test with the component's name and log.
func external(t *testing.T) *harness.Stack {
	t.Helper()
	stack2Once.Do(func() {
		stack2, stack2Err = harness.StartStack(harness.StackOptions{
			Name: "stack2", Dir: filepath.Join(workDir, "stack2"), Bins: bins, Replicas: 2, ExternalNATS: true, Logf: t.Logf,
		})
	})
	if stack2Err != nil {
		t.Fatalf("cannot start the external-NATS stack: %v", stack2Err)
	}
	diagnoseOnFailure(t, stack2)
	return stack2
}

// shared returns the embedded-NATS stack.
func shared(t *testing.T) *harness.Stack {
	t.Helper()
	diagnoseOnFailure(t, stack1)
	return stack1
}

func diagnoseOnFailure(t *testing.T, s *harness.Stack) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("component logs (%s):\n%s", s.LogDir, s.Diagnostics(25))
		}
	})
}
