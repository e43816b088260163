package natsedge_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/edgepass/edgepass/plugin/natsedge"
)

// bulkRevoke writes n session revocations with async publishes (the daemon's
// KV puts are publishes to $KV.<bucket>.<key>), each value padded with pad
// bytes of an ignored field.
func bulkRevoke(tb testing.TB, wr *writer, prefix string, n, pad int) {
	tb.Helper()
	val := []byte(fmt.Sprintf(`{"exp":%d,"pad":"%s"}`, time.Now().Add(time.Hour).Unix(), strings.Repeat("p", pad)))
	for i := 0; i < n; i++ {
		if _, err := wr.js.PublishAsync(fmt.Sprintf("$KV.%s.revoke.session.%s%07d", bucket, prefix, i), val); err != nil {
			tb.Fatal(err)
		}
		if i%2000 == 1999 { // stay under the default 4,000 pending async publishes
			waitPublished(tb, wr)
		}
	}
	waitPublished(tb, wr)
}

func waitPublished(tb testing.TB, wr *writer) {
	tb.Helper()
	select {
	case <-wr.js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		tb.Fatal("async publishes not acknowledged")
	}
}

// BenchmarkEdgeMemory100kRevocations reports the edge's heap growth with
// 100,000 revoked sessions replayed from a real NATS bucket.
func BenchmarkEdgeMemory100kRevocations(b *testing.B) {
	const n = 100000
	ns := startServer(b, nil)
	wr := newWriter(b, ns.url())
	bulkRevoke(b, wr, "m", n, 0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		w, err := natsedge.Shared(natsedge.Config{URLs: []string{ns.url()}, ReplicaID: fmt.Sprintf("mem-%d", i), Logf: func(string, ...any) {}})
		if err != nil {
			b.Fatal(err)
		}
		waitFor(b, "100k replay", 120*time.Second, func() bool { return w.State().Synced() && w.State().Stats().Sessions == n })
		replay := time.Since(start)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/(1<<20), "MiB")
		b.ReportMetric(float64(replay.Milliseconds()), "replay-ms")
		b.ReportMetric(float64(w.Stats().FlowControls), "flowcontrols")
		w.Close()
	}
}

// BenchmarkRevocationPropagation measures kv.Put → edge refuses the session,
// one revocation per op, with p50/p99 reported alongside ns/op.
func BenchmarkRevocationPropagation(b *testing.B) {
	ns := startServer(b, nil)
	wr := newWriter(b, ns.url())
	w, _ := watch(b, natsedge.Config{URLs: []string{ns.url()}, ReplicaID: "bench"})
	waitFor(b, "sync", 10*time.Second, func() bool { return w.State().Synced() })
	ctx := context.Background()
	val := []byte(revokeValue())
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sid := fmt.Sprintf("b%d-%d", b.N, i)
		start := time.Now()
		if _, err := wr.kv.Put(ctx, "revoke.session."+sid, val); err != nil {
			b.Fatal(err)
		}
		for !revoked(w, sid) {
			if time.Since(start) > 5*time.Second {
				b.Fatalf("revocation %d not applied", i)
			}
			runtime.Gosched()
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	b.ReportMetric(float64(percentile(lat, 0.50).Microseconds()), "p50-µs")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds()), "p99-µs")
}

// TestFlowControlOnLargeReplay replays enough data that the server asks for
// flow control; the edge must answer or the replay stalls.
func TestFlowControlOnLargeReplay(t *testing.T) {
	ns := startServer(t, nil)
	wr := newWriter(t, ns.url())
	const n = 20000
	bulkRevoke(t, wr, "fc", n, 0)
	w, _ := watch(t, natsedge.Config{URLs: []string{ns.url()}})
	waitFor(t, "replay", 30*time.Second, func() bool { return w.State().Synced() && w.State().Stats().Sessions == n })
	if w.Stats().FlowControls == 0 {
		t.Fatal("the server never asked for flow control; the test no longer covers it")
	}
	if w.Stats().Resyncs != 0 {
		t.Fatalf("stats %+v", w.Stats())
	}
}
