package natsedge_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgepass/edgepass/plugin/edgestate"
	"github.com/edgepass/edgepass/plugin/natsedge"
)

// BenchmarkLiveFactCPU prices one live edge-state change at an edge (what
// Traefik pays for each revocation or group change while it serves): an
// edge in a process of its own, synced, idles for a window and then
// receives 100 facts/s, one message each, for a window of the same length;
// the CPU it spent beyond idle, per fact delivered, is cpu-µs/fact. Under
// yaegi (as in Traefik) and compiled: the difference is the interpreter's.
// Each live fact wakes the edge on its own, which costs more than the fact
// (a first sync's replay, back to back, pays about 40 µs a fact under yaegi).
//
//	go test -run X -bench LiveFactCPU -benchtime 1x ./natsedge/
func BenchmarkLiveFactCPU(b *testing.B) {
	b.Run("yaegi", func(b *testing.B) { benchLiveFactCPU(b, "yaegi") })
	b.Run("native", func(b *testing.B) { benchLiveFactCPU(b, "native") })
}

func benchLiveFactCPU(b *testing.B, mode string) {
	ns := startServer(b, nil)
	wr := newWriter(b, ns.url())
	d := startDaemonSide(b, wr)
	const rate, window = 100, 5 * time.Second
	val := []byte(fmt.Sprintf(`{"exp":%d}`, time.Now().Add(time.Hour).Unix()))
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLiveCostHelper$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "EDGEPASS_LIVE_URL="+ns.url(), "EDGEPASS_LIVE_ANCHOR="+d.anchorText, "EDGEPASS_LIVE_WINDOW="+window.String(), "EDGEPASS_LIVE_MODE="+mode)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		var idle, live float64
		var facts int64
		sc := bufio.NewScanner(out)
		var all []string
		for sc.Scan() {
			line := sc.Text()
			all = append(all, line)
			if line == "LIVE-PHASE live" {
				// The child measures this window: publish at rate until it ends.
				stop := time.Now().Add(window)
				for n := 0; time.Now().Before(stop); n++ {
					if _, err := wr.js.PublishAsync("$KV."+bucket+"."+edgestate.PrefixRevokeSession+sid(fmt.Sprintf("live%d-", i), n), val); err != nil {
						b.Fatal(err)
					}
					time.Sleep(time.Second / rate)
				}
			}
			if strings.HasPrefix(line, "LIVE-COST ") {
				if _, err := fmt.Sscanf(line, "LIVE-COST idle=%f live=%f facts=%d", &idle, &live, &facts); err != nil {
					b.Fatalf("helper output %q: %v", line, err)
				}
			}
		}
		if err := cmd.Wait(); err != nil || facts == 0 {
			b.Fatalf("helper: %v (facts %d)\n%s", err, facts, strings.Join(all, "\n"))
		}
		b.ReportMetric((live-idle)/float64(facts)*1e6, "cpu-µs/fact")
		b.ReportMetric(float64(facts)/window.Seconds(), "facts/s")
		b.ReportMetric(idle/window.Seconds()*100, "idle-cpu-%")
	}
}

// TestLiveCostHelper is BenchmarkLiveFactCPU's edge process: it
// prints LIVE-PHASE lines for the parent and, last, its CPU seconds in the
// idle and the live window and the facts applied in the live one.
func TestLiveCostHelper(t *testing.T) {
	url := os.Getenv("EDGEPASS_LIVE_URL")
	if url == "" {
		t.Skip("run by BenchmarkLiveFactCPU")
	}
	window, err := time.ParseDuration(os.Getenv("EDGEPASS_LIVE_WINDOW"))
	if err != nil {
		t.Fatal(err)
	}
	var synced func() bool
	var delivered func() int64
	if os.Getenv("EDGEPASS_LIVE_MODE") == "native" {
		w, err := natsedge.Shared(natsedge.Config{URLs: []string{url}, ReplicaID: "live", TrustAnchors: []string{os.Getenv("EDGEPASS_LIVE_ANCHOR")}, Logf: func(string, ...any) {}})
		if err != nil {
			t.Fatal(err)
		}
		synced = func() bool { return w.State().Synced() }
		delivered = func() int64 { return int64(w.Stats().Delivered) }
	} else {
		y := loadUnderYaegi(t)
		if msg := y.startAs("live", url, "", "", os.Getenv("EDGEPASS_LIVE_ANCHOR"), 0); msg != "" {
			t.Fatal(msg)
		}
		synced = func() bool { return y.synced("live") }
		delivered = func() int64 { return int64(y.stats(t, "live").Watcher.Delivered) }
	}
	for deadline := time.Now().Add(time.Minute); !synced(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("not synced")
		}
	}
	time.Sleep(time.Second) // let the first sync's garbage settle
	c0 := cpuSeconds(t)
	time.Sleep(window)
	c1 := cpuSeconds(t)
	before := delivered()
	fmt.Println("LIVE-PHASE live")
	time.Sleep(window)
	c2 := cpuSeconds(t)
	facts := delivered() - before
	fmt.Printf("LIVE-COST idle=%f live=%f facts=%d\n", c1-c0, c2-c1, facts)
}

// cpuSeconds is this process's user+system CPU time.
func cpuSeconds(t testing.TB) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Skip("no getrusage")
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
