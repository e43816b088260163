package bench

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edgepass/edgepass/integration/harness"
	"github.com/edgepass/edgepass/plugin/token"
)

// Targets are the performance goals of the issue "Benchmarks: prove the
// edge is faster than ForwardAuth, side by side".
var Targets = struct {
	PluginVsNone, PluginVsForwardAuth float64
	RevocationP99                     time.Duration
	EdgeMemory                        int64
	// ChurnRatio is the issue "HA and scale"'s: throughput while 100
	// edge-state changes per second arrive for other users, over quiet.
	ChurnRatio float64
	// AssertionVsPlugin is the issue "Identity backends can verify"'s:
	// the plugin sending identity assertions over the plugin without.
	AssertionVsPlugin float64
	// FirstSync100k and EdgeRSS1M are the issue "HA and scale"'s: a new
	// edge synced against 100,000 facts, and an interpreted edge's
	// resident-set growth at 1,000,000 revocations.
	FirstSync100k time.Duration
	EdgeRSS1M     int64
}{0.90, 2.0, 100 * time.Millisecond, 64 << 20, 0.95, 0.97, 3 * time.Second, 128 << 20}

const mib = 1 << 20

func fmtMiB(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/mib) }

// TargetResult is one goal and how the run did.
type TargetResult struct {
	Goal     string
	Measured string
	Met      bool
	Measure  bool // false: not measured
}

// CheckTargets compares the results with Targets.
func (r *Results) CheckTargets() []TargetResult {
	var out []TargetResult
	if tp := r.Throughput; tp != nil {
		out = append(out,
			TargetResult{"plugin/no-middleware >= 0.90", fmt.Sprintf("%.2f", tp.PluginVsNone), tp.PluginVsNone >= Targets.PluginVsNone, true},
			TargetResult{"plugin/forwardauth >= 2.0", fmt.Sprintf("%.2f", tp.PluginVsForwardAuth), tp.PluginVsForwardAuth >= Targets.PluginVsForwardAuth, true})
		if tp.AssertionVsPlugin > 0 {
			out = append(out, TargetResult{"plugin+assertion/plugin >= 0.97", fmt.Sprintf("%.2f", tp.AssertionVsPlugin), tp.AssertionVsPlugin >= Targets.AssertionVsPlugin, true})
		} else {
			out = append(out, TargetResult{Goal: "plugin+assertion/plugin >= 0.97"})
		}
	} else {
		out = append(out, TargetResult{Goal: "plugin/no-middleware >= 0.90"}, TargetResult{Goal: "plugin/forwardauth >= 2.0"}, TargetResult{Goal: "plugin+assertion/plugin >= 0.97"})
	}
	if p := r.Revocation; p != nil {
		ok := p.Revoke.P99 < Targets.RevocationP99 && p.Revoke.Failures == 0
		out = append(out, TargetResult{"revocation propagation p99 < 100ms", fmtDur(p.Revoke.P99), ok, true})
	} else {
		out = append(out, TargetResult{Goal: "revocation propagation p99 < 100ms"})
	}
	if m := r.Memory; m != nil {
		out = append(out, TargetResult{fmt.Sprintf("edge memory < 64 MiB at %d revocations (Traefik RSS delta)", m.Revocations), fmtMiB(m.RSSDelta()), m.RSSDelta() < Targets.EdgeMemory, true})
	} else {
		out = append(out, TargetResult{Goal: "edge memory < 64 MiB at 100000 revocations"})
	}
	if c := r.Churn; c != nil {
		out = append(out, TargetResult{fmt.Sprintf("plugin under %.0f edge-state changes/s / quiet >= 0.95", c.ChangesPerS), fmt.Sprintf("%.2f", c.Ratio), c.Ratio >= Targets.ChurnRatio, true})
	} else {
		out = append(out, TargetResult{Goal: "plugin under 100 edge-state changes/s / quiet >= 0.95"})
	}
	goal := "new edge synced against 100000 facts (snapshot, Yaegi) < 3s"
	if v, ok := r.goBench("BenchmarkYaegiFirstSync100k/snapshot", "s-to-sync"); ok {
		d := time.Duration(v * float64(time.Second))
		out = append(out, TargetResult{goal, fmtDur(d), d < Targets.FirstSync100k, true})
	} else {
		out = append(out, TargetResult{Goal: goal})
	}
	goal = "edge RSS growth < 128 MiB at 1000000 revocations (Yaegi edge, own process)"
	if v, ok := r.goBench("BenchmarkYaegiEdgeRSS1M/snapshot", "rss-growth-MiB"); ok {
		out = append(out, TargetResult{goal, fmt.Sprintf("%.1f MiB", v), v*mib < float64(Targets.EdgeRSS1M), true})
	} else {
		out = append(out, TargetResult{Goal: goal})
	}
	return out
}

// goBench is one metric of one natsedge benchmark, when it ran.
func (r *Results) goBench(name, unit string) (float64, bool) {
	for _, b := range r.NATSEdge {
		if b.Name == name {
			v, ok := b.Metrics[unit]
			return v, ok
		}
	}
	return 0, false
}

// WriteReport writes the human-readable report. Its last two lines are the
// ratios in the fixed form other tools parse.
func (r *Results) WriteReport(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	m := r.Machine
	p("edgepass benchmark, %s (took %s)", r.Started.UTC().Format("2006-01-02 15:04 UTC"), r.Took.Round(time.Second))
	p("machine: %d × %s, Linux %s, %s, Traefik %s, wrk %s; plugin source digest %s", m.CPUs, m.CPU, m.Kernel, m.Go, m.Traefik, m.Wrk, r.Plugin)
	if tp := r.Throughput; tp != nil {
		l := tp.Load
		p("load: wrk -t%d -c%d -d%s --latency per variant per round, %d rounds round-robin after a %s warm-up per variant;",
			l.Threads, l.Connections, l.Duration, l.Rounds, l.WarmUp)
		p("      one Traefik, one echo backend, one entrypoint, the same signed-in session cookie for every variant")
		p("")
		p("%-15s %9s %8s %9s %9s   %s", "variant", "req/s", "vs none", "p50", "p99", "req/s per round")
		none := tp.Summary(NoMiddleware.Name).RequestsPerS
		for _, s := range tp.Summaries {
			var rounds []string
			for _, x := range s.PerRound {
				rounds = append(rounds, fmt.Sprintf("%.0f", x))
			}
			rel := 0.0
			if none > 0 {
				rel = s.RequestsPerS / none
			}
			p("%-15s %9.0f %8.2f %9s %9s   %s", s.Variant, s.RequestsPerS, rel, fmtDur(s.P50), fmtDur(s.P99), strings.Join(rounds, " "))
		}
		p("(medians over rounds; vs none = median req/s relative to no-middleware's)")
		p("per-round plugin/no-middleware: %s (median %.2f: the reported ratio)", roundRatios(tp, NoMiddleware.Name), tp.PluginVsNone)
		p("per-round plugin/forwardauth:   %s (median %.2f: the reported ratio)", roundRatios(tp, ForwardAuth.Name), tp.PluginVsForwardAuth)
		if tp.AssertionVsPlugin > 0 {
			p("per-round plugin+assertion/plugin: %s (median %.2f; target %.2f)", ratios(tp, PluginAssertion.Name, Plugin.Name), tp.AssertionVsPlugin, Targets.AssertionVsPlugin)
		}
		for _, w := range tp.NoiseWarnings() {
			p("WARNING: %s", w)
		}
		if tp.Summaries[0].CPU != nil {
			p("")
			p("CPU per request, µs (median over rounds; all %d cores; other = kernel and processes not listed):", r.Machine.CPUs)
			cols := []string{"traefik", "daemon", "echo", "wrk", "other", "idle"}
			p("%-15s %8s %8s %8s %8s %8s %8s %8s", "variant", cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], "total")
			for _, s := range tp.Summaries {
				total := 0.0
				vals := make([]any, 0, 8)
				vals = append(vals, s.Variant)
				for _, c := range cols {
					vals = append(vals, s.CPU[c])
					total += s.CPU[c]
				}
				vals = append(vals, total)
				p("%-15s %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f", vals...)
			}
			if a, b := tp.OwnCPU(NoMiddleware.Name), tp.OwnCPU(Plugin.Name); a > 0 && b > 0 {
				c := tp.OwnCPU(ForwardAuth.Name)
				p("requests per CPU-second of traefik+daemon+echo+wrk (immune to other processes): plugin/no-middleware %.2f, plugin/forwardauth %.2f", a/b, c/b)
				if d := tp.OwnCPU(PluginAssertion.Name); d > 0 {
					p("requests per CPU-second, plugin+assertion/plugin: %.2f", b/d)
				}
			}
		}
	}
	p("")
	if pl := r.PluginLoaded; pl != nil && r.Memory != nil {
		p("plugin with %d revocations held at the edge: %.0f req/s vs %.0f before them (%.2f; same Traefik restarted with api.debug, so not comparable with the table), p99 %s vs %s",
			r.Memory.Revocations, pl.After.RequestsPerS, pl.Before.RequestsPerS, pl.After.RequestsPerS/pl.Before.RequestsPerS, fmtDur(pl.After.P99), fmtDur(pl.Before.P99))
	}
	if rv := r.Revocation; rv != nil {
		p("revocation propagation (%s), N=%d: p50 %s, p99 %s, max %s, %d timed out",
			rv.Method, rv.Revoke.N, fmtDur(rv.Revoke.P50), fmtDur(rv.Revoke.P99), fmtDur(rv.Revoke.Max), rv.Revoke.Failures)
	}
	if c := r.Churn; c != nil {
		p("plugin while %.0f edge-state changes/s arrive for other users: median %.0f req/s vs %.0f quiet; rounds quiet %s, churn %s",
			c.ChangesPerS, median(c.Churn), median(c.Quiet), fmtRates(c.Quiet), fmtRates(c.Churn))
		p("per-round churn/quiet: %s (median %.2f: the reported ratio, paired like the throughput table's)", fmtRatios(c.PerRound()), c.Ratio)
		if len(c.QuietCPU) > 0 && len(c.ChurnCPU) > 0 {
			var parts []string
			for _, proc := range []string{"traefik", "daemon", "echo", "wrk", "other", "idle"} {
				parts = append(parts, fmt.Sprintf("%s %.1f -> %.1f", proc, MedianCPU(c.QuietCPU, proc), MedianCPU(c.ChurnCPU, proc)))
			}
			p("  CPU µs/request quiet -> churn (other includes this program publishing the changes): %s", strings.Join(parts, ", "))
		}
	}
	if d := r.Daemon; d != nil {
		p("daemon: %.1f complete logins/s through the OIDC provider (%d workers, %d logins, p50 %s, p99 %s); /verify %.0f req/s, p99 %s",
			d.LoginsPerS, d.LoginWorkers, d.Logins, fmtDur(d.LoginP50), fmtDur(d.LoginP99), d.VerifyPerS, fmtDur(d.VerifyP99))
	}
	if rv := r.RevocationAdmin; rv != nil {
		p("revocation end to end (%s), N=%d: p50 %s, p99 %s, max %s, %d timed out",
			rv.Method, rv.Revoke.N, fmtDur(rv.Revoke.P50), fmtDur(rv.Revoke.P99), fmtDur(rv.Revoke.Max), rv.Revoke.Failures)
	}
	for _, b := range r.NATSEdge {
		var ms []string
		for unit, v := range b.Metrics {
			switch unit {
			case "ns/op", "B/op", "allocs/op": // the harness's cost, not the measurement
				continue
			}
			ms = append(ms, strconv.FormatFloat(v, 'f', -1, 64)+" "+unit)
		}
		how := "compiled watcher"
		if strings.Contains(strings.ToLower(b.Name), "yaegi") {
			how = "watcher under Yaegi"
		}
		p("natsedge %s (%s + in-process NATS, no Traefik): %s", b.Name, how, strings.Join(slices.Sorted(slices.Values(ms)), ", "))
	}
	if mm := r.Memory; mm != nil {
		p("edge memory with %d revocations (published in %s, applied by the plugin after %s, seen by its 5 s heartbeat):",
			mm.Revocations, mm.PublishTook.Round(time.Millisecond), mm.ApplyTook.Round(time.Millisecond))
		p("  Traefik live heap after GC %+.1f MiB (%s -> %s); Traefik RSS %+.1f MiB (%s -> %s, includes uncollected garbage)",
			float64(mm.HeapDelta())/mib, fmtMiB(mm.HeapBefore), fmtMiB(mm.HeapAfter), float64(mm.RSSDelta())/mib, fmtMiB(mm.RSSBefore), fmtMiB(mm.RSSAfter))
		p("  edgestate.State alone, compiled, in this process: %s", fmtMiB(mm.StateHeap))
	}
	for _, pr := range r.Profiles {
		p("CPU profile of Traefik under %s load: %s (go tool pprof -top %s %s)", pr.Variant, pr.Path, r.Machine.TraefikBin, pr.Path)
	}
	if tc := r.TokenCost; tc != nil {
		p("token cost in the plugin under yaegi: first-seen %s/op (%s), cached %s/op (%s): first-seen costs %.0f× cached",
			fmtNs(tc.FirstSeen.Metrics["ns/op"]), tc.FirstSeen.Name, fmtNs(tc.Cached.Metrics["ns/op"]), tc.Cached.Name, tc.Ratio)
		for _, b := range tc.All {
			p("  %-56s %12s/op %8.0f B/op %6.0f allocs/op", b.Name, fmtNs(b.Metrics["ns/op"]), b.Metrics["B/op"], b.Metrics["allocs/op"])
		}
	}
	if c := r.Cookie; c != nil {
		verdict := fmt.Sprintf("fits in %d", token.MaxTokenSize)
		if !c.Fits {
			verdict = fmt.Sprintf("does NOT fit in %d; %d of the groups fit", token.MaxTokenSize, c.MaxGroupsThatFit)
		}
		if c.TokenBytes == 0 {
			p("cookie with %d groups: token.Sign refused it as too large; %d of the groups fit", c.Groups, c.MaxGroupsThatFit)
		} else {
			p("cookie with %d realistic groups (daemon claim set): token %d bytes, %s=<token> %d bytes: %s", c.Groups, c.TokenBytes, harness.SessionCookie, c.CookieBytes, verdict)
		}
	}
	p("")
	p("targets:")
	for _, t := range r.CheckTargets() {
		verdict := "not measured"
		if t.Measure {
			verdict = "MET"
			if !t.Met {
				verdict = "MISSED"
			}
		}
		p("  %-62s %10s  %s", t.Goal, t.Measured, verdict)
	}
	if len(r.Problems) > 0 {
		p("")
		p("not measured / problems:")
		for _, pr := range r.Problems {
			p("  - %s", strings.ReplaceAll(pr, "\n", "\n    "))
		}
	}
	if tp := r.Throughput; tp != nil {
		p("plugin/no-middleware throughput ratio: %.2f", tp.PluginVsNone)
		p("plugin/forwardauth throughput ratio: %.2f", tp.PluginVsForwardAuth)
	}
}

func fmtRates(v []float64) string {
	var out []string
	for _, x := range v {
		out = append(out, fmt.Sprintf("%.0f", x))
	}
	return strings.Join(out, " ")
}

// roundRatios is the plugin's req/s over the other variant's, round by
// round (neighbours in time, so background load hits both alike).
func roundRatios(tp *Throughput, other string) string {
	return ratios(tp, Plugin.Name, other)
}

// ratios are the per-round ratios of variant a over variant b.
func ratios(tp *Throughput, a, b string) string {
	pl, ot := tp.Summary(a).PerRound, tp.Summary(b).PerRound
	var out []string
	for i := 0; i < len(pl) && i < len(ot); i++ {
		if ot[i] > 0 {
			out = append(out, fmt.Sprintf("%.2f", pl[i]/ot[i]))
		}
	}
	return strings.Join(out, " ")
}

func fmtRatios(v []float64) string {
	var out []string
	for _, x := range v {
		out = append(out, fmt.Sprintf("%.2f", x))
	}
	return strings.Join(out, " ")
}

func fmtNs(ns float64) string { return fmtDur(time.Duration(ns)) }

// WriteFiles writes results.json, report.txt and throughput.svg to dir.
func (r *Results) WriteFiles(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: encode results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), data, 0o644); err != nil {
		return err
	}
	var b strings.Builder
	r.WriteReport(&b)
	if err := os.WriteFile(filepath.Join(dir, "report.txt"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	if r.Throughput != nil {
		if err := os.WriteFile(filepath.Join(dir, "throughput.svg"), []byte(r.Throughput.SVG(r.Machine, r.Started)), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// SVG draws the medians as horizontal bars with each round as a tick.
func (t *Throughput) SVG(m Machine, when time.Time) string {
	const (
		width, left, right, top, barH, gap = 760, 130, 190, 58, 34, 18
	)
	max := 0.0
	for _, s := range t.Summaries {
		for _, x := range append([]float64{s.RequestsPerS}, s.PerRound...) {
			if x > max {
				max = x
			}
		}
	}
	if max == 0 {
		max = 1
	}
	scale := float64(width-left-right) / max
	height := top + len(t.Summaries)*(barH+gap) + 40
	colors := map[string]string{NoMiddleware.Name: "#8c8c8c", Plugin.Name: "#2b7bb9", ForwardAuth.Name: "#d9822b", YaegiFloor.Name: "#6aa84f", PluginAssertion.Name: "#7b4fb0"}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="13">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n")
	version, _, _ := strings.Cut(m.Traefik, " ")
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">Requests/s through one Traefik %s, median of %d rounds (higher is better)</text>`+"\n", 12, html.EscapeString(version), t.Load.Rounds)
	fmt.Fprintf(&b, `<text x="%d" y="42" fill="#555" font-size="12">plugin/no-middleware %.2f · plugin/forwardauth %.2f · wrk -t%d -c%d -d%s · %d × %s · %s</text>`+"\n",
		12, t.PluginVsNone, t.PluginVsForwardAuth, t.Load.Threads, t.Load.Connections, t.Load.Duration, m.CPUs, html.EscapeString(m.CPU), when.UTC().Format("2006-01-02"))
	for i, s := range t.Summaries {
		y := top + i*(barH+gap)
		w := int(s.RequestsPerS * scale)
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-10, y+barH/2+5, html.EscapeString(s.Variant))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>`+"\n", left, y, w, barH, colors[s.Variant])
		end := left + w
		for _, x := range s.PerRound {
			px := left + int(x*scale)
			if px > end {
				end = px
			}
			fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#222" stroke-width="1.5"/>`+"\n", px, y-4, px, y+barH+4)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d">%.0f req/s · p99 %s</text>`+"\n", end+8, y+barH/2+5, s.RequestsPerS, html.EscapeString(fmtDur(s.P99)))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#555" font-size="11">ticks: each round's req/s. Source: make bench (integration/bench).</text>`+"\n", left, height-14)
	b.WriteString("</svg>\n")
	return b.String()
}
