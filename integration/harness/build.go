package harness

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Binaries are the programs a stack runs.
type Binaries struct {
	Traefik    string // Traefik v3.6.12 (scripts/build-traefik.sh)
	Daemon     string // the edgepass binary
	Echo       string // the echo backend
	NATSServer string // nats-server (only for stacks with external NATS)
	Provider   string // integration/oidcprovider (a directory with node_modules)
	Node       string // the node executable
	Repo       string // repository root (plugin source)
}

// BuildOptions choose what to build.
type BuildOptions struct {
	// OutDir receives the daemon and echo binaries.
	OutDir string
	// NATSServer also builds (or finds) nats-server.
	NATSServer bool
	// Logf reports progress of slow steps.
	Logf func(format string, args ...any)
}

// Build builds or finds every binary a stack needs. Traefik and nats-server
// are cached across runs; the daemon and echo are rebuilt every time so the
// tests run the code in the tree.
func Build(ctx context.Context, o BuildOptions) (*Binaries, error) {
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	repo, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("harness: create build directory: %w", err)
	}
	b := &Binaries{Repo: repo, Provider: filepath.Join(repo, "integration", "oidcprovider")}

	start := time.Now()
	b.Daemon = filepath.Join(o.OutDir, "edgepass")
	if err := goBuild(ctx, "daemon", filepath.Join(repo, "daemon"), b.Daemon, "./cmd/edgepass"); err != nil {
		return nil, err
	}
	b.Echo = filepath.Join(o.OutDir, "echo")
	if err := goBuild(ctx, "echo", filepath.Join(repo, "integration"), b.Echo, "./echo"); err != nil {
		return nil, err
	}
	logf("harness: built daemon and echo in %s", time.Since(start).Round(time.Millisecond))

	if b.Traefik, err = runScript(ctx, "traefik", repo, "EDGEPASS_TRAEFIK", "scripts/build-traefik.sh", logf); err != nil {
		return nil, err
	}
	if o.NATSServer {
		if b.NATSServer, err = runScript(ctx, "nats-server", repo, "EDGEPASS_NATS_SERVER", "scripts/build-nats-server.sh", logf); err != nil {
			return nil, err
		}
	}
	if _, err := runScript(ctx, "oidcprovider", repo, "", "scripts/install-oidc-provider.sh", logf); err != nil {
		return nil, err
	}
	if b.Node, err = exec.LookPath("node"); err != nil {
		return nil, fmt.Errorf("harness: oidcprovider needs Node.js (node >= 18) on PATH: %w", err)
	}
	return b, nil
}

func goBuild(ctx context.Context, name, dir, out, pkg string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = dir
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("harness: cannot build %s (cd %s && go build -o %s %s): %v\n%s", name, dir, out, pkg, err, indent(strings.TrimSpace(buf.String())))
	}
	return nil
}

// HelmBin builds the helm CLI (or finds it in the cache), for the chart
// tests: scripts/build-helm.sh, which uses EDGEPASS_HELM when set.
func HelmBin(ctx context.Context, logf func(format string, args ...any)) (string, error) {
	return repoScript(ctx, "helm", "", "scripts/build-helm.sh", logf)
}

// repoScript is runScript in the repository RepoRoot finds; logf may be nil.
func repoScript(ctx context.Context, name, env, script string, logf func(string, ...any)) (string, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	repo, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return runScript(ctx, name, repo, env, script, logf)
}

// runScript runs one of the repository's install scripts, which print the
// path of what they built on their last stdout line (env overrides it) and
// their progress on stderr, passed to logf line by line as it comes.
func runScript(ctx context.Context, name, repo, env, script string, logf func(string, ...any)) (string, error) {
	if env != "" {
		if p := os.Getenv(env); p != "" {
			if !fileExists(p) {
				return "", fmt.Errorf("harness: %s: %s=%s does not exist", name, env, p)
			}
			return p, nil
		}
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(repo, script))
	cmd.Dir = repo
	var stdout, stderr bytes.Buffer
	progress := &lineWriter{logf: logf}
	cmd.Stdout, cmd.Stderr = &stdout, io.MultiWriter(&stderr, progress)
	err := cmd.Run()
	progress.flush()
	if err != nil {
		return "", fmt.Errorf("harness: %s: %s failed: %v\n%s", name, script, err, indent(LastLines(stderr.String(), 30)))
	}
	if d := time.Since(start); d > 5*time.Second {
		logf("harness: %s: %s took %s", name, script, d.Round(time.Second))
	}
	out := strings.TrimSpace(LastLines(stdout.String(), 1))
	return out, nil
}

// LastLines returns the last n lines of s.
func LastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// lineWriter passes what is written to logf, one call per line.
type lineWriter struct {
	logf func(string, ...any)
	buf  []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.logf("%s", w.buf[:i])
		w.buf = w.buf[i+1:]
	}
}

func (w *lineWriter) flush() {
	if len(w.buf) > 0 {
		w.logf("%s", w.buf)
		w.buf = nil
	}
}
