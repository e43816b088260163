package natsedge_test

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/plugin/natsedge"
)

// First sync of a new edge against n session revocations (the daemon's
// exact values, 43-character session ids), with and without the daemon's
// snapshot, under yaegi (what a Traefik replica pays at start) and natively.
// Run with -benchtime 1x:
//
//	go test -run X -bench 'FirstSync' -benchtime 1x -timeout 60m ./natsedge/
//
// Reported: seconds until synced, facts/s, entries delivered one by one, and
// (natively) the live heap the edge took after a GC (MiB, bytes per
// revocation).
func BenchmarkYaegiFirstSync100k(b *testing.B) { benchFirstSync(b, 100000, true) }
func BenchmarkYaegiFirstSync1M(b *testing.B)   { benchFirstSync(b, 1000000, true) }
func BenchmarkFirstSync100k(b *testing.B)      { benchFirstSync(b, 100000, false) }
func BenchmarkFirstSync1M(b *testing.B)        { benchFirstSync(b, 1000000, false) }

func benchFirstSync(b *testing.B, n int, interpreted bool) {
	ns := startServer(b, nil)
	wr := newWriter(b, ns.url())
	d := startDaemonSide(b, wr)
	revokeExact(b, wr, "bench", n)
	d.caughtUp(b)
	var y *yaegiEdge
	if interpreted {
		y = loadUnderYaegi(b)
	}
	run := func(b *testing.B, want uint64) {
		for i := 0; i < b.N; i++ {
			name := fmt.Sprintf("%s-%d-%d", b.Name(), i, time.Now().UnixNano()%1e6)
			last := d.streamLast(b)
			start := time.Now()
			var synced func() bool
			var stats func() edgeStats
			var closeEdge func()
			if interpreted {
				if msg := y.startAs(name, ns.url(), "", "", d.anchorText, 0); msg != "" {
					b.Fatal(msg)
				}
				synced = func() bool { return y.synced(name) }
				stats = func() edgeStats { return y.stats(b, name) }
				closeEdge = func() { y.close(name) }
			} else {
				w, err := natsedge.Shared(natsedge.Config{URLs: []string{ns.url()}, ReplicaID: name, TrustAnchors: []string{d.anchorText}, Logf: func(string, ...any) {}})
				if err != nil {
					b.Fatal(err)
				}
				synced = func() bool { return w.State().Synced() }
				stats = func() edgeStats { return edgeStats{Watcher: w.Stats(), State: w.State().Stats()} }
				closeEdge = w.Close
			}
			deadline := time.Now().Add(30 * time.Minute)
			for st := stats(); !(synced() && st.State.LastSeq >= last && st.State.Sessions >= n); st = stats() {
				if time.Now().After(deadline) {
					b.Fatalf("not synced: seq %d of %d, %d sessions", st.State.LastSeq, last, st.State.Sessions)
				}
				time.Sleep(20 * time.Millisecond)
			}
			took := time.Since(start)
			st := stats()
			if st.Watcher.SnapshotSeq != want {
				b.Fatalf("snapshot seq %d, want %d", st.Watcher.SnapshotSeq, want)
			}
			b.ReportMetric(took.Seconds(), "s-to-sync")
			b.ReportMetric(float64(n)/took.Seconds(), "facts/s")
			b.ReportMetric(float64(st.Watcher.Delivered), "entries")
			if interpreted {
				// An interpreted edge's memory is measured in a process
				// of its own (BenchmarkYaegiEdgeRSS1M).
				closeEdge()
				continue
			}
			// The edge's live heap: with it, less without it (measured
			// back to back: the server's caches move over a long run).
			with := liveHeap()
			closeEdge()
			heap := with - liveHeap()
			b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
			b.ReportMetric(float64(heap)/float64(n), "heap-B/rev")
		}
	}
	b.Run("full", func(b *testing.B) { run(b, 0) })
	res := d.snapshot(b)
	b.Logf("snapshot of %d facts: %d chunks, %.1f MiB", res.Facts, res.Chunks, float64(res.Bytes)/(1<<20))
	b.Run("snapshot", func(b *testing.B) { run(b, res.Seq) })
}

func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// BenchmarkYaegiEdgeRSS1M runs a yaegi edge in a process of its own (as in
// Traefik) against 1,000,000 session revocations, from a snapshot and by a
// full replay, and reports how much its resident set grew from the
// interpreter loaded to synced (rss-growth-MiB) and at its peak
// (peak-growth-MiB, VmHWM), with GOGC at its default, and the live heap the
// edge added (heap-MiB, heap-B/rev).
func BenchmarkYaegiEdgeRSS1M(b *testing.B) {
	const n = 1000000
	ns := startServer(b, nil)
	wr := newWriter(b, ns.url())
	d := startDaemonSide(b, wr)
	revokeExact(b, wr, "rss", n)
	d.caughtUp(b)
	run := func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			cmd := exec.Command(os.Args[0], "-test.run=^TestEdgeProcessHelper$", "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), "EDGEPASS_HELPER_URL="+ns.url(), "EDGEPASS_HELPER_ANCHOR="+d.anchorText, fmt.Sprintf("EDGEPASS_HELPER_N=%d", n), "GOGC=")
			out, err := cmd.CombinedOutput()
			if err != nil {
				b.Fatalf("helper: %v\n%s", err, out)
			}
			var base, rss, hwm, heap, secs float64
			i := strings.Index(string(out), "EDGE-RSS ")
			if i < 0 {
				b.Fatalf("helper output:\n%s", out)
			}
			if _, err := fmt.Sscanf(string(out[i:]), "EDGE-RSS base=%f rss=%f hwm=%f heap=%f secs=%f", &base, &rss, &hwm, &heap, &secs); err != nil {
				b.Fatalf("helper output %q: %v", out[i:], err)
			}
			b.ReportMetric((rss-base)/(1<<20), "rss-growth-MiB")
			b.ReportMetric((hwm-base)/(1<<20), "peak-growth-MiB")
			b.ReportMetric(heap/(1<<20), "heap-MiB")
			b.ReportMetric(heap/n, "heap-B/rev")
			b.ReportMetric(secs, "s-to-sync")
		}
	}
	b.Run("full", run)
	d.snapshot(b)
	b.Run("snapshot", run)
}

// TestEdgeProcessHelper is BenchmarkYaegiEdgeRSS1M's edge process.
func TestEdgeProcessHelper(t *testing.T) {
	url := os.Getenv("EDGEPASS_HELPER_URL")
	if url == "" {
		t.Skip("run by BenchmarkYaegiEdgeRSS1M")
	}
	var n int64
	fmt.Sscan(os.Getenv("EDGEPASS_HELPER_N"), &n)
	y := loadUnderYaegi(t)
	runtime.GC()
	debug.FreeOSMemory()
	base := procStatus(t, "VmRSS")
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := time.Now()
	if msg := y.startAs("rss", url, "", "", os.Getenv("EDGEPASS_HELPER_ANCHOR"), 0); msg != "" {
		t.Fatal(msg)
	}
	deadline := time.Now().Add(30 * time.Minute)
	for !(y.synced("rss") && int64(y.stats(t, "rss").State.Sessions) >= n) {
		if time.Now().After(deadline) {
			t.Fatal("not synced")
		}
		time.Sleep(50 * time.Millisecond)
	}
	secs := time.Since(start).Seconds()
	rss, hwm := procStatus(t, "VmRSS"), procStatus(t, "VmHWM")
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	fmt.Printf("EDGE-RSS base=%d rss=%d hwm=%d heap=%d secs=%f\n", base, rss, hwm, int64(m.HeapAlloc)-int64(m0.HeapAlloc), secs)
}

// procStatus reads a size in bytes from /proc/self/status.
func procStatus(t testing.TB, field string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field+":") {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(line, field+":"), "kB")), &kb)
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}
