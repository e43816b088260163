package bench

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/edgepass/edgepass/integration/harness"
)

// Machine describes where the numbers were measured.
type Machine struct {
	CPUs    int
	CPU     string // model name from /proc/cpuinfo
	Kernel  string
	Go      string
	Traefik string
	// TraefikBin is the binary, for reading its profiles.
	TraefikBin string
	Wrk        string
}

// PluginDigest identifies the plugin source a run measured: the first 12
// hex digits of SHA-256 over harness.PluginSources (the files Traefik
// loads), with their paths, in path order.
func PluginDigest(repo string) string {
	files, err := harness.PluginSources(repo)
	if err != nil {
		return "unknown"
	}
	h := sha256.New()
	for _, rel := range files {
		data, err := os.ReadFile(filepath.Join(repo, rel))
		if err != nil {
			return "unknown"
		}
		fmt.Fprintf(h, "%s %d\n", filepath.ToSlash(rel), len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// DescribeMachine gathers what a reader needs to compare runs.
func DescribeMachine(ctx context.Context, traefikBin, wrkBin string) Machine {
	m := Machine{CPUs: runtime.NumCPU(), CPU: cpuModel(), Go: runtime.Version()}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	if traefikBin != "" {
		m.TraefikBin = traefikBin
		m.Traefik = firstMatch(ctx, traefikBin, []string{"version"}, "Version:")
		// Built from the module proxy's source, Traefik calls itself "dev";
		// scripts/build-traefik.sh names the binary after the version.
		if v, ok := strings.CutPrefix(filepath.Base(traefikBin), "traefik-"); ok && (m.Traefik == "dev" || m.Traefik == "unknown") {
			m.Traefik = v + " (binary reports " + m.Traefik + ")"
		}
	}
	// "wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer"
	if f := strings.Fields(firstMatch(ctx, wrkBin, []string{"--version"}, "wrk")); len(f) > 0 {
		m.Wrk = f[0]
	}
	return m
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// firstMatch runs a program and returns its first output line containing
// marker (wrk --version exits 1 but prints its version).
func firstMatch(ctx context.Context, bin string, args []string, marker string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, marker) {
			line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), marker))
			return strings.Join(strings.Fields(line), " ")
		}
	}
	return "unknown"
}
