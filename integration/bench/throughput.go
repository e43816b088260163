package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Load is how hard and how long each variant is driven.
type Load struct {
	Threads     int
	Connections int
	Duration    time.Duration // per variant per round
	WarmUp      time.Duration // per variant, before the first round
	Rounds      int
	// Pause between runs lets closed connections drain.
	Pause time.Duration
}

// WrkRun is one wrk run of one variant.
type WrkRun struct {
	Variant string
	Round   int // 0 = warm-up
	WrkResult
}

// VariantSummary is the median over rounds.
type VariantSummary struct {
	Variant      string
	RequestsPerS float64
	P50, P99     time.Duration
	PerRound     []float64 // req/s of each round, in round order
}

// Throughput is the side-by-side comparison.
type Throughput struct {
	Load      Load
	Runs      []WrkRun
	Summaries []VariantSummary // in Variants order
	// PluginVsNone and PluginVsForwardAuth are ratios of median req/s.
	PluginVsNone        float64
	PluginVsForwardAuth float64
}

// order returns the variants in the order of round r (1-based): rotated
// every round, so no variant always runs first or after the same neighbour.
func order(r int) []Variant {
	n := len(Variants)
	out := make([]Variant, n)
	for i := range out {
		out[i] = Variants[(i+r-1)%n]
	}
	return out
}

// MeasureThroughput drives the three routes with identical wrk loads,
// round-robin, and summarizes. Every run must be clean (only 2xx); wrk's raw
// output is kept in rawDir.
func MeasureThroughput(ctx context.Context, s *Stack, sess *Session, l Load, rawDir string, logf func(string, ...any)) (*Throughput, error) {
	if err := os.MkdirAll(rawDir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	run := func(v Variant, round int, d time.Duration) (WrkResult, error) {
		load := WrkLoad{
			URL:         s.TraefikURL + v.Path + "/bench",
			Threads:     l.Threads,
			Connections: l.Connections,
			Duration:    d,
			Headers:     []string{sess.CookieHeader(), "Accept: application/json"},
		}
		r, raw, err := RunWrk(ctx, load)
		_ = os.WriteFile(filepath.Join(rawDir, fmt.Sprintf("round%d-%s.txt", round, v.Name)), []byte(raw), 0o644)
		if err != nil {
			return r, fmt.Errorf("bench: %s round %d: %w", v.Name, round, err)
		}
		if err := r.Clean(); err != nil {
			return r, fmt.Errorf("bench: %s round %d through traefik: %w (see %s)", v.Name, round, err, filepath.Join(rawDir, fmt.Sprintf("round%d-%s.txt", round, v.Name)))
		}
		return r, nil
	}
	t := &Throughput{Load: l}
	if l.WarmUp > 0 {
		for _, v := range Variants {
			logf("bench: warm-up %s for %s", v.Name, l.WarmUp)
			if _, err := run(v, 0, l.WarmUp); err != nil {
				return nil, err
			}
			time.Sleep(l.Pause)
		}
	}
	for round := 1; round <= l.Rounds; round++ {
		for _, v := range order(round) {
			r, err := run(v, round, l.Duration)
			if err != nil {
				return nil, err
			}
			logf("bench: round %d/%d %-13s %8.0f req/s  p50 %-9s p99 %s", round, l.Rounds, v.Name, r.RequestsPerS, fmtDur(r.P50), fmtDur(r.P99))
			t.Runs = append(t.Runs, WrkRun{Variant: v.Name, Round: round, WrkResult: r})
			time.Sleep(l.Pause)
		}
	}
	t.summarize()
	return t, nil
}

func (t *Throughput) summarize() {
	t.Summaries = nil
	by := map[string]VariantSummary{}
	for _, v := range Variants {
		var rps []float64
		var p50, p99 []time.Duration
		var perRound []float64
		for _, r := range t.Runs {
			if r.Variant != v.Name || r.Round == 0 {
				continue
			}
			rps = append(rps, r.RequestsPerS)
			p50 = append(p50, r.P50)
			p99 = append(p99, r.P99)
			perRound = append(perRound, r.RequestsPerS)
		}
		s := VariantSummary{Variant: v.Name, RequestsPerS: medianF(rps), P50: medianD(p50), P99: medianD(p99), PerRound: perRound}
		by[v.Name] = s
		t.Summaries = append(t.Summaries, s)
	}
	if none := by[NoMiddleware.Name].RequestsPerS; none > 0 {
		t.PluginVsNone = by[Plugin.Name].RequestsPerS / none
	}
	if fwd := by[ForwardAuth.Name].RequestsPerS; fwd > 0 {
		t.PluginVsForwardAuth = by[Plugin.Name].RequestsPerS / fwd
	}
}

// Summary returns the named variant's summary.
func (t *Throughput) Summary(name string) VariantSummary {
	for _, s := range t.Summaries {
		if s.Variant == name {
			return s
		}
	}
	return VariantSummary{Variant: name}
}

func medianF(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func medianD(xs []time.Duration) time.Duration {
	f := make([]float64, len(xs))
	for i, x := range xs {
		f[i] = float64(x)
	}
	return time.Duration(medianF(f))
}

// fmtDur prints a latency with three significant digits.
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}
