//go:build unix

package natsserver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockDataDir takes an exclusive lock on dir, so that two daemons never run
// embedded servers on the same JetStream storage (each would overwrite the
// other's files). The kernel drops the lock when the process dies, kill -9
// included; closing the returned file releases it.
func lockDataDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "edgepass.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("nats: lock data directory: %w; check nats.embedded.dataDir", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("nats: data directory %s is in use by another edgepass process; stop it, or give each daemon its own nats.embedded.dataDir (replicas share state through an external NATS cluster)", dir)
		}
		return nil, fmt.Errorf("nats: lock data directory %s: %w", dir, err)
	}
	return f, nil
}
