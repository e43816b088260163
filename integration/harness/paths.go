// Package harness starts edgepass's end-to-end stack — Traefik with the
// plugin, NATS, the daemon, a real OpenID Connect provider and an echo
// backend — as real subprocesses on 127.0.0.1, and drives it like a browser.
// Every component logs to a file; a component that fails to start is named in
// the error together with the last lines of its log.
package harness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// RepoRoot finds the repository root (the directory holding .traefik.yml and
// go.mod) from the working directory upwards, so tests run from any package.
func RepoRoot() (string, error) {
	if root := os.Getenv("EDGEPASS_REPO"); root != "" {
		return root, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("harness: find repository root: %w", err)
	}
	for {
		if fileExists(filepath.Join(dir, ".traefik.yml")) && fileExists(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("harness: cannot find the repository root (a directory with .traefik.yml and go.mod) above the working directory; set EDGEPASS_REPO")
		}
		dir = parent
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
