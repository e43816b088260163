package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"time"
)

// NATSServerBin builds nats-server (or finds it in the cache) without
// building the rest of the stack: scripts/build-nats-server.sh, or
// EDGEPASS_NATS_SERVER when set.
func NATSServerBin(ctx context.Context, logf func(format string, args ...any)) (string, error) {
	return repoScript(ctx, "nats-server", "EDGEPASS_NATS_SERVER", "scripts/build-nats-server.sh", logf)
}

// NATSConfSpec runs nats-server with a configuration file the caller wrote
// (the deploy tests run the Kubernetes manifests' nats.conf this way).
type NATSConfSpec struct {
	// Name names the server in errors and its log file.
	Name string
	Bin  string
	// Conf is the configuration file; Dir the working directory (default:
	// the file's directory).
	Conf string
	Dir  string
	// Env is added to the environment: the variables the configuration
	// refers to ($POD_NAME, passwords, ...).
	Env []string
	// LogPath receives the server's output (-DV is not added: the caller's
	// configuration decides the log level).
	LogPath string
	// ClientPort is where the server accepts clients on 127.0.0.1; the
	// server is ready once it accepts TCP there and has logged "Server is
	// ready".
	ClientPort int
	// Ports (ClientPort included) must be free before the start.
	Ports []int
	// Timeout bounds the wait for readiness (default 20s).
	Timeout time.Duration
}

// StartNATSConf starts nats-server -c spec.Conf and waits until it is ready.
func StartNATSConf(s NATSConfSpec) (*Proc, error) {
	if s.Name == "" {
		s.Name = "nats"
	}
	if s.Dir == "" {
		s.Dir = filepath.Dir(s.Conf)
	}
	if s.Timeout == 0 {
		s.Timeout = 20 * time.Second
	}
	if s.ClientPort == 0 {
		return nil, fmt.Errorf("harness: %s: ClientPort is required", s.Name)
	}
	// The log is appended to: only what this start writes tells it is ready.
	offset := fileSize(s.LogPath)
	return startReady(ProcSpec{
		Name:    s.Name,
		Path:    s.Bin,
		Args:    []string{"-c", s.Conf},
		Dir:     s.Dir,
		Env:     s.Env,
		LogPath: s.LogPath,
	}, append([]int{s.ClientPort}, s.Ports...), hostPort(s.ClientPort), s.Timeout, func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", hostPort(s.ClientPort))
		if err != nil {
			return err
		}
		c.Close()
		if log, err := readFrom(s.LogPath, offset); err != nil || !bytes.Contains(log, []byte("Server is ready")) {
			return errors.New(`no "Server is ready" in the log yet`)
		}
		return nil
	})
}
