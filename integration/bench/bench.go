// Package bench measures edgepass against the alternatives it replaces, on
// one real Traefik: requests per second with no middleware, with the
// edgepass plugin and with ForwardAuth to the daemon's /verify (same
// entrypoint, backend, wrk load and session), plus how fast a revocation
// reaches the edge, what 100,000 revocations cost the edge in memory, what a
// first-seen token costs against a cached one under Yaegi, and how large a
// session cookie with 50 groups gets. cmd/bench is its command; `make bench`
// runs it.
package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgepass/edgepass/integration/harness"
	"github.com/edgepass/edgepass/plugin/natsedge"
)

// Options configure a run. Defaults live in DefaultOptions.
type Options struct {
	// OutDir receives results, raw wrk output and component logs.
	OutDir string
	// Module is the integration module's directory (Go benchmarks).
	Module string
	Load   Load
	// Revocations is the number of KV revocations timed through Traefik;
	// AdminRevocations the number of end-to-end admin API revocations (each
	// needs a fresh login).
	Revocations      int
	AdminRevocations int
	// RevocationTimeout bounds the wait for one revocation to show.
	RevocationTimeout time.Duration
	// MemoryRevocations is how many revocations the memory test publishes.
	MemoryRevocations int
	// CookieGroups is the number of groups in the cookie-size token.
	CookieGroups int
	// ChurnPerS is how many edge-state changes per second the churn
	// comparison publishes (0 skips it).
	ChurnPerS int
	// DaemonLogins is how long the daemon-capacity test signs in for (0
	// skips it); DaemonWorkers how many browsers at once.
	DaemonLogins  time.Duration
	DaemonWorkers int
	// Floor adds a fourth route with a trivial Yaegi plugin (YaegiFloor),
	// to tell the edgepass plugin's own cost from any Yaegi plugin's.
	Floor bool
	// Profile takes CPU profiles of Traefik under no-middleware and plugin
	// load (after the comparison, on a Traefik restarted with api.debug).
	Profile bool
	// GoBenchTime is -benchtime for the Go benchmarks ("" skips them).
	GoBenchTime string
	// Scale adds the first-sync benchmarks at 100,000 and 1,000,000 facts,
	// the edge's resident set at 1,000,000 revocations and the CPU of a
	// live fact (about two minutes; needs GoBenchTime).
	Scale bool
	Logf  func(format string, args ...any)
}

// DefaultOptions are sized for about eight minutes on two cores, two of
// them the scale set. Nine short rounds rather than three long ones: on a
// small shared machine the noise is other processes' bursts, and a median
// over more rounds resists it better.
func DefaultOptions() Options {
	return Options{
		Load: Load{
			Threads:     2,
			Connections: 32,
			Duration:    5 * time.Second,
			WarmUp:      3 * time.Second,
			Rounds:      9,
			Pause:       time.Second,
			Wrk:         "wrk",
		},
		Revocations:       100,
		AdminRevocations:  10,
		RevocationTimeout: 5 * time.Second,
		MemoryRevocations: 100000,
		CookieGroups:      50,
		ChurnPerS:         100,
		DaemonLogins:      10 * time.Second,
		DaemonWorkers:     4,
		Profile:           true,
		GoBenchTime:       "2s",
		Scale:             true,
	}
}

// Results is everything one run measured; a nil section was not measured
// and Problems says why.
type Results struct {
	Started time.Time
	Took    time.Duration
	Machine Machine
	// Plugin is PluginDigest of the measured plugin source.
	Plugin     string
	Options    Options `json:"-"`
	Throughput *Throughput
	// PluginLoaded is the plugin's throughput before and with
	// MemoryRevocations revocations held by the edge.
	PluginLoaded *LoadedThroughput
	// Profiles are CPU profiles of Traefik under load.
	Profiles []Profile
	// Revocation is timed through Traefik by this package (KV put);
	// RevocationAdmin end to end through the daemon's admin API.
	Revocation      *Propagation
	RevocationAdmin *Propagation
	// NATSEdge holds the natsedge package's own benchmarks, when it has any.
	NATSEdge  []GoBenchResult
	Memory    *EdgeMemory
	Churn     *ChurnThroughput
	Daemon    *DaemonCapacity
	TokenCost *TokenCost
	Cookie    *CookieSize
	Problems  []string
}

func (r *Results) problem(err error) {
	r.Problems = append(r.Problems, err.Error())
}

// Run measures everything it can; an error means no throughput comparison
// could be made (a component failed); a section that failed alone is listed
// in Results.Problems.
func Run(ctx context.Context, o Options) (*Results, error) {
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	res := &Results{Started: time.Now(), Options: o}
	defer func() { res.Took = time.Since(res.Started) }()
	work := filepath.Join(o.OutDir, "work")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return res, fmt.Errorf("bench: %w", err)
	}

	if cs, err := MeasureCookieSize(o.CookieGroups, harness.SessionCookie); err != nil {
		res.problem(err)
	} else {
		res.Cookie = &cs
	}

	logf("bench: building the daemon and echo, finding Traefik and the OIDC provider")
	bins, err := harness.Build(ctx, harness.BuildOptions{OutDir: filepath.Join(work, "bin"), Logf: logf})
	if err != nil {
		return res, err
	}
	res.Machine = DescribeMachine(ctx, bins.Traefik, o.Load.Wrk)
	res.Plugin = PluginDigest(bins.Repo)

	// Compile the Go benchmarks now: compiling during the load test would
	// steal its CPU.
	var yaegiBench, natsBench *GoBench
	if o.GoBenchTime != "" {
		logf("bench: compiling the yaegi and natsedge benchmarks")
		if yaegiBench, err = CompileGoBench(ctx, o.Module, "./yaegi", filepath.Join(work, "bin")); err != nil {
			res.problem(fmt.Errorf("first-seen vs cached token cost: %w", err))
		}
		if natsBench, err = CompileGoBench(ctx, o.Module, "./natsedge", filepath.Join(work, "bin")); err != nil {
			logf("bench: no natsedge benchmarks (%v); revocation and memory are measured through Traefik only", firstLine(err))
			natsBench = nil
		}
	}

	if err := measureStack(ctx, o, bins, work, res, logf); err != nil {
		return res, err
	}

	if yaegiBench != nil {
		logf("bench: yaegi benchmarks (first-seen vs cached token), -benchtime %s", o.GoBenchTime)
		results, raw, err := yaegiBench.Run(ctx, "BenchmarkYaegi(ServeHTTP|FastPathSteps)$", o.GoBenchTime, 5*time.Minute)
		_ = os.WriteFile(filepath.Join(o.OutDir, "yaegi-bench.txt"), []byte(raw), 0o644)
		if err != nil {
			res.problem(fmt.Errorf("first-seen vs cached token cost: %w", err))
		} else if tc, err := tokenCost(results); err != nil {
			res.problem(err)
		} else {
			res.TokenCost = tc
		}
	}
	if natsBench != nil {
		// Each op of the memory benchmark replays all 100,000 revocations:
		// one op is the measurement. The propagation benchmark times one
		// revocation per op.
		// The scale figures of the issue "HA and scale": a new edge's first
		// sync against 100,000 facts (by replay and from the daemon's
		// snapshot) and against 1,000,000 (snapshot; a full replay of 1M
		// takes about 40 s), and the resident-set growth of an interpreted
		// edge holding 1,000,000 revocations, in a process of its own; and
		// the CPU one live fact costs an edge (what the churn comparison
		// pays).
		benches := []struct{ pattern, benchtime string }{
			{"BenchmarkRevocationPropagation$", fmt.Sprintf("%dx", max(o.Revocations, 50))},
			{"BenchmarkEdgeMemory100kRevocations$", "1x"},
		}
		if o.Scale {
			benches = append(benches,
				struct{ pattern, benchtime string }{"BenchmarkYaegiFirstSync100k$", "1x"},
				struct{ pattern, benchtime string }{"BenchmarkYaegiFirstSync1M$/snapshot$", "1x"},
				struct{ pattern, benchtime string }{"BenchmarkYaegiEdgeRSS1M$/snapshot$", "1x"},
				struct{ pattern, benchtime string }{"BenchmarkLiveFactCPU$", "1x"})
		}
		for _, nb := range benches {
			logf("bench: natsedge %s -benchtime %s", strings.TrimSuffix(nb.pattern, "$"), nb.benchtime)
			results, raw, err := natsBench.Run(ctx, nb.pattern, nb.benchtime, 5*time.Minute)
			appendFile(filepath.Join(o.OutDir, "natsedge-bench.txt"), raw)
			if err != nil {
				res.problem(fmt.Errorf("natsedge benchmarks: %w", err))
				continue
			}
			res.NATSEdge = append(res.NATSEdge, results...)
		}
	}
	return res, nil
}

// measureStack runs everything that needs the running installation.
func measureStack(ctx context.Context, o Options, bins *harness.Binaries, work string, res *Results, logf func(string, ...any)) error {
	stackDir := filepath.Join(work, "stack")
	_ = os.RemoveAll(stackDir)
	logf("bench: starting echo, oidc-provider, the daemon (embedded NATS) and Traefik")
	s, err := StartStack(bins, stackDir, o.Floor)
	if err != nil {
		return err
	}
	defer func() {
		s.Close()
		// Keep the logs; drop the NATS store the memory test filled.
		_ = os.RemoveAll(filepath.Join(stackDir, "daemon", "nats"))
	}()
	fail := func(err error) error {
		return fmt.Errorf("%w\ncomponent logs:\n%s", err, s.Diagnostics(15))
	}

	edge, err := ConnectEdge(ctx, s.NATS)
	if err != nil {
		return fail(err)
	}
	defer edge.Close()
	if _, err := edge.WaitHeartbeat(30*time.Second, "synced", func(hb natsedge.Heartbeat) bool { return hb.Synced }); err != nil {
		return fail(err)
	}
	sess, err := Login(s)
	if err != nil {
		return fail(err)
	}
	logf("bench: signed in as %s through the oidc provider in %s", sess.User, sess.Took.Round(time.Millisecond))
	if err := CheckRoutes(s, sess); err != nil {
		return fail(err)
	}

	tp, err := MeasureThroughput(ctx, s, sess, o.Load, filepath.Join(o.OutDir, "wrk"), logf)
	if err != nil {
		return fail(err)
	}
	res.Throughput = tp

	if o.ChurnPerS > 0 {
		logf("bench: plugin throughput quiet vs under %d edge-state changes/s for other users", o.ChurnPerS)
		if c, err := MeasureChurn(ctx, s, edge, sess, o.Load, o.ChurnPerS, filepath.Join(o.OutDir, "wrk")); err != nil {
			res.problem(fmt.Errorf("churn: %w", err))
		} else {
			res.Churn = &c
		}
	}
	if o.DaemonLogins > 0 {
		logf("bench: daemon capacity: logins for %s with %d browsers, then /verify under wrk", o.DaemonLogins, o.DaemonWorkers)
		if d, err := MeasureDaemon(ctx, s, sess, o.Load, o.DaemonWorkers, o.DaemonLogins); err != nil {
			res.problem(fmt.Errorf("daemon capacity: %w", err))
		} else {
			res.Daemon = &d
		}
	}
	if o.Revocations > 0 {
		logf("bench: revocation propagation, %d KV revocations of fresh sessions", o.Revocations)
		if p, err := MeasureRevocationKV(ctx, s, edge, o.Revocations, o.RevocationTimeout); err != nil {
			res.problem(fmt.Errorf("revocation propagation: %w", err))
		} else {
			res.Revocation = &p
		}
	}
	if o.AdminRevocations > 0 {
		logf("bench: revocation end to end, %d sign-ins revoked with the admin API", o.AdminRevocations)
		if p, err := MeasureRevocationAdmin(s, o.AdminRevocations, o.RevocationTimeout); err != nil {
			res.problem(fmt.Errorf("admin API revocation: %w", err))
		} else {
			res.RevocationAdmin = &p
		}
	}
	if !o.Profile && o.MemoryRevocations == 0 {
		return checkAlive(s, fail)
	}
	// Profiles and heap readings need Traefik's debug endpoints, which also
	// slow it down: a restart with them on, after the comparison.
	logf("bench: restarting Traefik with api.debug for profiles and heap readings")
	if err := s.RestartTraefikDebug(); err != nil {
		return fail(err)
	}
	if err := WaitServing(s, sess, 30*time.Second); err != nil {
		return fail(err)
	}
	if o.Profile {
		for _, v := range []Variant{NoMiddleware, Plugin} {
			path := filepath.Join(o.OutDir, "traefik-"+v.Name+".cpu.pprof")
			logf("bench: CPU profile of Traefik under %s load -> %s", v.Name, path)
			if r, err := ProfileUnderLoad(ctx, s, sess, v, o.Load, path); err != nil {
				res.problem(fmt.Errorf("profile: %w", err))
			} else {
				res.Profiles = append(res.Profiles, Profile{Variant: v.Name, Path: path, RequestsPerS: r.RequestsPerS})
			}
		}
	}
	if o.MemoryRevocations > 0 {
		pluginRun := func(label string) (*WrkResult, error) {
			r, raw, err := RunWrk(ctx, variantLoad(s, sess, Plugin, o.Load, o.Load.Duration))
			_ = os.WriteFile(filepath.Join(o.OutDir, "wrk", "plugin-"+label+".txt"), []byte(raw), 0o644)
			if err == nil {
				err = r.Clean()
			}
			return &r, err
		}
		before, err := pluginRun("debug-traefik-0-revocations")
		if err != nil {
			res.problem(fmt.Errorf("plugin throughput before the revocations: %w", err))
		}
		logf("bench: edge memory, publishing %d revocations", o.MemoryRevocations)
		if m, err := MeasureEdgeMemory(ctx, s, edge, o.MemoryRevocations); err != nil {
			res.problem(fmt.Errorf("edge memory: %w", err))
		} else {
			res.Memory = &m
			logf("bench: plugin throughput with %d revocations held", o.MemoryRevocations)
			after, err := pluginRun(fmt.Sprintf("debug-traefik-%d-revocations", o.MemoryRevocations))
			if err != nil {
				res.problem(fmt.Errorf("plugin throughput with %d revocations: %w", o.MemoryRevocations, err))
			} else if before.RequestsPerS > 0 {
				res.PluginLoaded = &LoadedThroughput{Before: *before, After: *after}
			}
		}
	}
	return checkAlive(s, fail)
}

// checkAlive fails when a component died during the measurements.
func checkAlive(s *Stack, fail func(error) error) error {
	for _, p := range []*harness.Proc{s.Traefik.Proc, s.Daemon.Proc} {
		if ok, werr := p.Exited(); ok {
			return fail(fmt.Errorf("bench: %s exited during the benchmark: %v", p.Spec.Name, werr))
		}
	}
	return nil
}

// LoadedThroughput compares the plugin's throughput on the same (debug)
// Traefik before and after the edge took on many revocations.
type LoadedThroughput struct {
	Before, After WrkResult
}

// Profile is a CPU profile of Traefik taken under one variant's load.
type Profile struct {
	Variant      string
	Path         string
	RequestsPerS float64 // while profiled, with api.debug on: not comparable
}

// TokenCost compares the plugin's request path for a token it has not seen
// (parse and verify the signature) with one it has cached, under Yaegi.
type TokenCost struct {
	FirstSeen, Cached GoBenchResult
	// Ratio is first-seen ns/op over cached ns/op.
	Ratio float64
	All   []GoBenchResult
}

// tokenCost picks the first-seen and cached sub-benchmarks by name.
func tokenCost(results []GoBenchResult) (*TokenCost, error) {
	tc := &TokenCost{All: results}
	var haveFirst, haveCached bool
	for _, r := range results {
		sub := strings.ToLower(r.Name[strings.LastIndex(r.Name, "/")+1:])
		switch {
		case strings.Contains(sub, "first") || strings.Contains(sub, "uncached") || strings.Contains(sub, "miss") || strings.Contains(sub, "new"):
			if !haveFirst {
				tc.FirstSeen, haveFirst = r, true
			}
		case strings.Contains(sub, "cached") || strings.Contains(sub, "hit"):
			if !haveCached {
				tc.Cached, haveCached = r, true
			}
		}
	}
	if !haveFirst || !haveCached {
		var names []string
		for _, r := range results {
			names = append(names, r.Name)
		}
		return nil, fmt.Errorf("first-seen vs cached token cost: cannot tell the first-seen and the cached benchmark apart among %s", strings.Join(names, ", "))
	}
	if c := tc.Cached.Metrics["ns/op"]; c > 0 {
		tc.Ratio = tc.FirstSeen.Metrics["ns/op"] / c
	}
	return tc, nil
}

func appendFile(path, data string) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.WriteString(data)
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
