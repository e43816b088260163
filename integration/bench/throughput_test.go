package bench

import (
	"testing"
	"time"
)

func TestOrderRotatesEveryVariantThroughEveryPosition(t *testing.T) {
	first := map[string]bool{}
	for r := 1; r <= len(Variants); r++ {
		o := order(Variants, r)
		if len(o) != len(Variants) {
			t.Fatalf("round %d: %d variants", r, len(o))
		}
		seen := map[string]bool{}
		for _, v := range o {
			seen[v.Name] = true
		}
		if len(seen) != len(Variants) {
			t.Errorf("round %d runs %v: a variant is missing or repeated", r, o)
		}
		first[o[0].Name] = true
	}
	if len(first) != len(Variants) {
		t.Errorf("over %d rounds only %v ran first", len(Variants), first)
	}
}

func TestSummarizeTakesMediansAndRatios(t *testing.T) {
	ms := time.Millisecond
	tp := &Throughput{Runs: []WrkRun{
		{Variant: "no-middleware", Round: 0, WrkResult: WrkResult{RequestsPerS: 1}}, // warm-up: ignored
		{Variant: "no-middleware", Round: 1, WrkResult: WrkResult{RequestsPerS: 10000, P50: 1 * ms, P99: 5 * ms}},
		{Variant: "plugin", Round: 1, WrkResult: WrkResult{RequestsPerS: 9000, P50: 2 * ms, P99: 6 * ms}},
		{Variant: "forwardauth", Round: 1, WrkResult: WrkResult{RequestsPerS: 3000, P50: 9 * ms, P99: 30 * ms}},
		{Variant: "no-middleware", Round: 2, WrkResult: WrkResult{RequestsPerS: 12000, P50: 3 * ms, P99: 7 * ms}},
		{Variant: "plugin", Round: 2, WrkResult: WrkResult{RequestsPerS: 9500, P50: 2 * ms, P99: 8 * ms}},
		{Variant: "forwardauth", Round: 2, WrkResult: WrkResult{RequestsPerS: 3100, P50: 10 * ms, P99: 20 * ms}},
		{Variant: "no-middleware", Round: 3, WrkResult: WrkResult{RequestsPerS: 11000, P50: 2 * ms, P99: 6 * ms}},
		{Variant: "plugin", Round: 3, WrkResult: WrkResult{RequestsPerS: 100, P50: 4 * ms, P99: 90 * ms}},
		{Variant: "forwardauth", Round: 3, WrkResult: WrkResult{RequestsPerS: 2900, P50: 11 * ms, P99: 40 * ms}},
	}}
	tp.summarize()
	none, plugin, fwd := tp.Summary("no-middleware"), tp.Summary("plugin"), tp.Summary("forwardauth")
	if none.RequestsPerS != 11000 || none.P50 != 2*ms || none.P99 != 6*ms {
		t.Errorf("no-middleware = %+v", none)
	}
	if plugin.RequestsPerS != 9000 || plugin.P99 != 8*ms || len(plugin.PerRound) != 3 || plugin.PerRound[2] != 100 {
		t.Errorf("plugin = %+v", plugin)
	}
	if fwd.RequestsPerS != 3000 {
		t.Errorf("forwardauth = %+v", fwd)
	}
	// Per round: 0.90, 0.79, 0.009 -> median 0.79 (round 3's plugin
	// outlier spoils one ratio, not the result).
	if got, want := tp.PluginVsNone, 9500.0/12000; got != want {
		t.Errorf("PluginVsNone = %v, want %v", got, want)
	}
	// Per round: 3.0, 3.06, 0.034 -> median 3.0.
	if got, want := tp.PluginVsForwardAuth, 3.0; got != want {
		t.Errorf("PluginVsForwardAuth = %v, want %v", got, want)
	}
}

func TestPercentileNearestRank(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 200; i++ {
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	l := summarize(s, 0)
	if l.P50 != 100*time.Millisecond || l.P99 != 198*time.Millisecond || l.Max != 200*time.Millisecond || l.N != 200 {
		t.Errorf("summarize = %+v", l)
	}
	if l := summarize(nil, 0); l.P99 != 0 || l.N != 0 {
		t.Errorf("empty summarize = %+v", l)
	}
}

func TestNoiseWarnings(t *testing.T) {
	calm := &Throughput{Summaries: []VariantSummary{{Variant: "plugin", RequestsPerS: 10000, PerRound: []float64{9800, 10000, 10300},
		CPU: CPUPerRequest{"traefik": 100, "echo": 50, "wrk": 15, "other": 5}}}}
	if w := calm.NoiseWarnings(); len(w) != 0 {
		t.Errorf("calm run warned: %v", w)
	}
	busy := &Throughput{Summaries: []VariantSummary{{Variant: "plugin", RequestsPerS: 10000, PerRound: []float64{7000, 10000, 12000},
		CPU: CPUPerRequest{"traefik": 100, "echo": 50, "wrk": 15, "other": 60}}}}
	if w := busy.NoiseWarnings(); len(w) != 2 {
		t.Errorf("busy run: %d warnings, want a spread and a CPU one: %v", len(w), w)
	}
}

func TestFmtDurKeepsThreeSignificantDigits(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{846 * time.Nanosecond, "0.85µs"},
		{3857 * time.Nanosecond, "3.86µs"},
		{38400 * time.Nanosecond, "38.4µs"},
		{847 * time.Microsecond, "847µs"},
		{3740 * time.Microsecond, "3.74ms"},
		{14600 * time.Microsecond, "14.6ms"},
		{2 * time.Second, "2.00s"},
	} {
		if got := fmtDur(c.d); got != c.want {
			t.Errorf("fmtDur(%v) = %q, want %q", c.d, got, c.want)
		}
	}
}

func TestChurnRatioPairsRounds(t *testing.T) {
	// Round 2 is a burst that slowed both of its runs: paired, it counts
	// as 1.0; medians of each side would report 0.8.
	c := ChurnThroughput{Quiet: []float64{100, 50, 100}, Churn: []float64{100, 50, 80}}
	if got := fmtRatios(c.PerRound()); got != "1.00 1.00 0.80" {
		t.Fatalf("per round %q", got)
	}
	if got := median(c.PerRound()); got != 1.0 {
		t.Fatalf("median %v", got)
	}
}

func TestScaleTargetsReadTheGoBenchmarks(t *testing.T) {
	r := &Results{NATSEdge: []GoBenchResult{
		{Name: "BenchmarkYaegiFirstSync100k/snapshot", Metrics: map[string]float64{"s-to-sync": 0.2}},
		{Name: "BenchmarkYaegiEdgeRSS1M/snapshot", Metrics: map[string]float64{"rss-growth-MiB": 130}},
	}}
	met := map[string]bool{}
	for _, tr := range r.CheckTargets() {
		if tr.Measure {
			met[tr.Goal] = tr.Met
		}
	}
	if !met["new edge synced against 100000 facts (snapshot, Yaegi) < 3s"] {
		t.Errorf("0.2 s first sync should meet the 3 s target: %v", met)
	}
	if m, ok := met["edge RSS growth < 128 MiB at 1000000 revocations (Yaegi edge, own process)"]; !ok || m {
		t.Errorf("130 MiB should be measured and miss the 128 MiB target: %v", met)
	}
}
