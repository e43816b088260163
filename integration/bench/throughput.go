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
	// Wrk is the wrk executable ("" = wrk from PATH).
	Wrk string `json:"-"`
}

// variantLoad is the wrk load every measurement drives a variant with: l's
// threads, connections and wrk, the session's cookie, for d.
func variantLoad(s *Stack, sess *Session, v Variant, l Load, d time.Duration) WrkLoad {
	return WrkLoad{
		Bin:         l.Wrk,
		URL:         s.TraefikURL + v.Path + "/bench",
		Threads:     l.Threads,
		Connections: l.Connections,
		Duration:    d,
		Headers:     []string{sess.CookieHeader(), "Accept: application/json"},
	}
}

// WrkRun is one wrk run of one variant.
type WrkRun struct {
	Variant string
	Round   int // 0 = warm-up
	WrkResult
	// CPU is where each request's CPU time went, by process.
	CPU CPUPerRequest
}

// VariantSummary is the median over rounds.
type VariantSummary struct {
	Variant      string
	RequestsPerS float64
	P50, P99     time.Duration
	PerRound     []float64 // req/s of each round, in round order
	// CPU is the median over rounds of each process's µs per request.
	CPU CPUPerRequest
}

// Throughput is the side-by-side comparison.
type Throughput struct {
	Load      Load
	Runs      []WrkRun
	Summaries []VariantSummary // in Variants order
	// PluginVsNone and PluginVsForwardAuth are the medians of the
	// per-round ratios of req/s: each round runs the variants back to back,
	// so a ratio compares neighbours in time and a burst of other work on
	// the machine spoils one round's ratio instead of one variant's median.
	PluginVsNone        float64
	PluginVsForwardAuth float64
	// AssertionVsPlugin is plugin+assertion over plugin (0 when the run
	// had no assertion route): what identity assertions cost.
	AssertionVsPlugin float64

	variants []Variant
}

// order returns the variants in the order of round r (1-based): rotated
// every round, so no variant always runs first or after the same neighbour.
func order(variants []Variant, r int) []Variant {
	n := len(variants)
	out := make([]Variant, n)
	for i := range out {
		out[i] = variants[(i+r-1)%n]
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
	var cpu CPUPerRequest // of the last run
	run := func(v Variant, round int, d time.Duration) (WrkResult, error) {
		before := sampleCPU(s.pids())
		r, raw, err := RunWrk(ctx, variantLoad(s, sess, v, l, d))
		cpu = perRequest(sampleCPU(s.pids()).Sub(before), r.CPU, r.Requests)
		_ = os.WriteFile(filepath.Join(rawDir, fmt.Sprintf("round%d-%s.txt", round, v.Name)), []byte(raw), 0o644)
		if err != nil {
			return r, fmt.Errorf("bench: %s round %d: %w", v.Name, round, err)
		}
		if err := r.Clean(); err != nil {
			return r, fmt.Errorf("bench: %s round %d through traefik: %w (see %s)", v.Name, round, err, filepath.Join(rawDir, fmt.Sprintf("round%d-%s.txt", round, v.Name)))
		}
		return r, nil
	}
	t := &Throughput{Load: l, variants: s.Variants}
	if l.WarmUp > 0 {
		for _, v := range s.Variants {
			logf("bench: warm-up %s for %s", v.Name, l.WarmUp)
			if _, err := run(v, 0, l.WarmUp); err != nil {
				return nil, err
			}
			time.Sleep(l.Pause)
		}
	}
	for round := 1; round <= l.Rounds; round++ {
		for _, v := range order(s.Variants, round) {
			r, err := run(v, round, l.Duration)
			if err != nil {
				return nil, err
			}
			logf("bench: round %d/%d %-13s %8.0f req/s  p50 %-9s p99 %s", round, l.Rounds, v.Name, r.RequestsPerS, fmtDur(r.P50), fmtDur(r.P99))
			t.Runs = append(t.Runs, WrkRun{Variant: v.Name, Round: round, WrkResult: r, CPU: cpu})
			time.Sleep(l.Pause)
		}
	}
	t.summarize()
	return t, nil
}

func (t *Throughput) summarize() {
	t.Summaries = nil
	by := map[string]VariantSummary{}
	variants := t.variants
	if variants == nil {
		variants = Variants
	}
	for _, v := range variants {
		var perRound []float64
		var p50, p99 []time.Duration
		for _, r := range t.Runs {
			if r.Variant != v.Name || r.Round == 0 {
				continue
			}
			perRound = append(perRound, r.RequestsPerS)
			p50 = append(p50, r.P50)
			p99 = append(p99, r.P99)
		}
		cpu := map[string][]float64{}
		for _, r := range t.Runs {
			if r.Variant == v.Name && r.Round != 0 {
				for k, x := range r.CPU {
					cpu[k] = append(cpu[k], x)
				}
			}
		}
		s := VariantSummary{Variant: v.Name, RequestsPerS: medianF(perRound), P50: medianD(p50), P99: medianD(p99), PerRound: perRound}
		if len(cpu) > 0 {
			s.CPU = CPUPerRequest{}
			for k, xs := range cpu {
				s.CPU[k] = medianF(xs)
			}
		}
		by[v.Name] = s
		t.Summaries = append(t.Summaries, s)
	}
	t.PluginVsNone = medianRatio(by[Plugin.Name].PerRound, by[NoMiddleware.Name].PerRound)
	t.PluginVsForwardAuth = medianRatio(by[Plugin.Name].PerRound, by[ForwardAuth.Name].PerRound)
	t.AssertionVsPlugin = medianRatio(by[PluginAssertion.Name].PerRound, by[Plugin.Name].PerRound)
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
	case d < 10*time.Microsecond:
		return fmt.Sprintf("%.2fµs", float64(d)/float64(time.Microsecond))
	case d < 100*time.Microsecond:
		return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond))
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

// OwnCPU is the median CPU per request, in µs, of the processes that serve
// it (traefik, daemon, echo, wrk): the cost of a request whatever else the
// machine runs.
func (t *Throughput) OwnCPU(variant string) float64 {
	c := t.Summary(variant).CPU
	return c["traefik"] + c["daemon"] + c["echo"] + c["wrk"]
}

// NoiseWarnings flags a run whose numbers other processes disturbed: a
// variant whose rounds spread widely, or much busy CPU no benchmark process
// accounts for.
func (t *Throughput) NoiseWarnings() []string {
	var out []string
	for _, s := range t.Summaries {
		if len(s.PerRound) < 2 || s.RequestsPerS == 0 {
			continue
		}
		lo, hi := s.PerRound[0], s.PerRound[0]
		for _, x := range s.PerRound {
			lo, hi = min(lo, x), max(hi, x)
		}
		if spread := (hi - lo) / s.RequestsPerS; spread > 0.25 {
			out = append(out, fmt.Sprintf("%s rounds spread %.0f%% around their median (%.0f..%.0f req/s): the machine was busy; rerun on an idle machine or with more rounds", s.Variant, spread*100, lo, hi))
		}
		if s.CPU != nil {
			total := s.CPU["other"] + t.OwnCPU(s.Variant)
			if total > 0 && s.CPU["other"]/total > 0.15 {
				out = append(out, fmt.Sprintf("%s: %.0f%% of the busy CPU was outside the benchmark's processes (other processes or kernel work)", s.Variant, 100*s.CPU["other"]/total))
			}
		}
	}
	return out
}

// medianRatio is the median over rounds of a[i]/b[i].
func medianRatio(a, b []float64) float64 {
	var rs []float64
	for i := 0; i < len(a) && i < len(b); i++ {
		if b[i] > 0 {
			rs = append(rs, a[i]/b[i])
		}
	}
	return medianF(rs)
}
