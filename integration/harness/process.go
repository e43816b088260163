package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ProcSpec describes one component subprocess.
type ProcSpec struct {
	// Name names the component in every error ("traefik-1", "daemon").
	Name string
	// Path and Args are the program and its arguments.
	Path string
	Args []string
	// Dir is the working directory.
	Dir string
	// Env is added to the harness's environment.
	Env []string
	// LogPath receives stdout and stderr (appended, so a restarted component
	// keeps its earlier log).
	LogPath string
}

// Proc is a running component.
type Proc struct {
	Spec ProcSpec

	cmd     *exec.Cmd
	logFile *os.File
	done    chan struct{}
	waitErr error
	started time.Time
}

// StartProc starts a component in its own process group; it dies with the
// harness (Pdeathsig) so a crashed test leaves nothing behind.
func StartProc(spec ProcSpec) (*Proc, error) {
	if err := os.MkdirAll(filepath.Dir(spec.LogPath), 0o755); err != nil {
		return nil, fmt.Errorf("harness: %s: create log directory: %w", spec.Name, err)
	}
	lf, err := os.OpenFile(spec.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("harness: %s: open log: %w", spec.Name, err)
	}
	fmt.Fprintf(lf, "=== harness: %s starting at %s: %s %s\n", spec.Name, time.Now().Format(time.RFC3339Nano), spec.Path, strings.Join(spec.Args, " "))
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Dir = spec.Dir
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("harness: %s: cannot start %s: %w", spec.Name, spec.Path, err)
	}
	p := &Proc{Spec: spec, cmd: cmd, logFile: lf, done: make(chan struct{}), started: time.Now()}
	go func() {
		p.waitErr = cmd.Wait()
		fmt.Fprintf(lf, "=== harness: %s exited: %v\n", spec.Name, describeExit(p.waitErr))
		lf.Close()
		close(p.done)
	}()
	return p, nil
}

// startReady checks that ports (zeros skipped) are free, starts the
// component and waits until check passes (see WaitReady); a component that
// does not become ready is killed.
func startReady(spec ProcSpec, ports []int, what string, timeout time.Duration, check func(ctx context.Context) error) (*Proc, error) {
	for _, port := range ports {
		if port != 0 {
			if err := CheckPortFree(spec.Name, port); err != nil {
				return nil, err
			}
		}
	}
	p, err := StartProc(spec)
	if err != nil {
		return nil, err
	}
	if err := p.WaitReady(what, timeout, check); err != nil {
		_ = p.Kill()
		return nil, err
	}
	return p, nil
}

func describeExit(err error) string {
	if err == nil {
		return "status 0"
	}
	return err.Error()
}

// PID is the component's process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended, and how.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// Stop sends SIGTERM to the component's process group and SIGKILL after
// timeout.
func (p *Proc) Stop(timeout time.Duration) error {
	if ok, _ := p.Exited(); ok {
		return nil
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
	}
	if err := p.sigkill(); err != nil {
		return err
	}
	return fmt.Errorf("harness: %s ignored SIGTERM for %s and was killed", p.Spec.Name, timeout)
}

// Kill sends SIGKILL (kill -9) to the component and waits for it to end: a
// crash, with no chance to flush or clean up.
func (p *Proc) Kill() error {
	if ok, _ := p.Exited(); ok {
		return nil
	}
	return p.sigkill()
}

// sigkill sends SIGKILL to the component's process group and waits up to
// 10s for the process to end.
func (p *Proc) sigkill() error {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("harness: %s (pid %d) survived SIGKILL", p.Spec.Name, p.cmd.Process.Pid)
	}
}

// restartExited runs start, which starts component name again, once its
// process p has ended (after Stop or Kill); a p still running is an error.
func restartExited(p *Proc, name string, start func() error) error {
	if p != nil {
		if ok, _ := p.Exited(); !ok {
			return fmt.Errorf("harness: %s: restart while still running; stop it first", name)
		}
	}
	return start()
}

// Tail returns the last n lines of the component's log.
func (p *Proc) Tail(n int) string { return TailFile(p.Spec.LogPath, n) }

// TailFile returns the last n lines of a file (or a note why it cannot).
func TailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	return LastLines(string(data), n)
}

// LogContains reports whether the component's log has a line containing s.
func (p *Proc) LogContains(s string) bool {
	data, err := os.ReadFile(p.Spec.LogPath)
	return err == nil && bytes.Contains(data, []byte(s))
}

// LogOffset is the size of the component's log now: where LogFrom starts
// reading what is written after this moment.
func (p *Proc) LogOffset() int64 { return fileSize(p.Spec.LogPath) }

// LogFrom returns the component's log from offset (see LogOffset) on.
func (p *Proc) LogFrom(offset int64) ([]byte, error) { return readFrom(p.Spec.LogPath, offset) }

// fileSize is the size of the file at path (0 when there is none).
func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// readFrom returns the content of the file at path from offset on.
func readFrom(path string, offset int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, err
	}
	return io.ReadAll(f)
}

// ErrGiveUp, wrapped by a readiness check's error, stops waiting at once: the
// component answered, and the answer will not improve (a router Traefik
// disabled because the plugin failed to load).
var ErrGiveUp = errors.New("giving up")

// WaitReady polls check until it succeeds, the process exits or timeout
// passes; the error names the component, what it waited for and the log tail.
func (p *Proc) WaitReady(what string, timeout time.Duration, check func(ctx context.Context) error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if ok, werr := p.Exited(); ok {
			return fmt.Errorf("harness: %s exited before becoming ready on %s (%s); last log lines (%s):\n%s",
				p.Spec.Name, what, describeExit(werr), p.Spec.LogPath, indent(p.Tail(30)))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		last = check(ctx)
		cancel()
		if last == nil {
			return nil
		}
		if errors.Is(last, ErrGiveUp) {
			return fmt.Errorf("harness: %s on %s is up but broken: %v; last log lines (%s):\n%s",
				p.Spec.Name, what, last, p.Spec.LogPath, indent(p.Tail(30)))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("harness: %s did not become ready on %s within %s: %v; last log lines (%s):\n%s",
				p.Spec.Name, what, timeout, last, p.Spec.LogPath, indent(p.Tail(30)))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
