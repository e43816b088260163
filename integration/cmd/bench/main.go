// Command bench compares, on one real Traefik, the edgepass plugin with no
// middleware and with ForwardAuth to the daemon, and measures revocation
// propagation, edge memory, token cost under Yaegi and cookie size. It
// writes bench-results/<time>/ and prints a report whose last two lines are
// the throughput ratios. `make bench` runs it through scripts/bench.sh.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/edgepass/edgepass/integration/bench"
	"github.com/edgepass/edgepass/integration/harness"
)

func main() {
	os.Exit(run())
}

func run() int {
	o := bench.DefaultOptions()
	flag.DurationVar(&o.Load.Duration, "duration", o.Load.Duration, "wrk duration per variant per round")
	flag.DurationVar(&o.Load.WarmUp, "warmup", o.Load.WarmUp, "wrk warm-up per variant before the first round (0 = none)")
	flag.IntVar(&o.Load.Rounds, "rounds", o.Load.Rounds, "rounds; each runs every variant once, round-robin")
	flag.IntVar(&o.Load.Threads, "threads", o.Load.Threads, "wrk threads")
	flag.IntVar(&o.Load.Connections, "connections", o.Load.Connections, "wrk connections")
	flag.IntVar(&o.Revocations, "revocations", o.Revocations, "revocations timed through Traefik (0 = skip)")
	flag.IntVar(&o.AdminRevocations, "admin-revocations", o.AdminRevocations, "end-to-end admin API revocations, one sign-in each (0 = skip)")
	flag.IntVar(&o.MemoryRevocations, "memory-revocations", o.MemoryRevocations, "revocations published for the edge memory test (0 = skip)")
	flag.BoolVar(&o.Floor, "floor", o.Floor, "add a fourth route with a trivial Yaegi plugin setting the same headers (calibration)")
	flag.BoolVar(&o.Profile, "profile", o.Profile, "CPU-profile Traefik under no-middleware and plugin load (after the comparison, with api.debug)")
	flag.IntVar(&o.CookieGroups, "cookie-groups", o.CookieGroups, "groups in the cookie-size token (at most 50)")
	flag.StringVar(&o.GoBenchTime, "gobenchtime", o.GoBenchTime, `-benchtime of the yaegi and natsedge Go benchmarks ("" = skip)`)
	flag.BoolVar(&o.Scale, "scale", o.Scale, "first sync at 100,000 and 1,000,000 facts and edge RSS at 1,000,000 revocations (about 2 minutes)")
	flag.StringVar(&o.Load.Wrk, "wrk", o.Load.Wrk, "wrk executable")
	out := flag.String("out", "", "results directory (default <repo>/bench-results)")
	strict := flag.Bool("strict", false, "exit 1 when a performance target is missed")
	render := flag.String("render", "", "measure nothing: rewrite report.txt and throughput.svg beside this results.json and print the report")
	flag.Parse()

	if *render != "" {
		return rerender(*render)
	}

	if o.Load.Rounds < 1 || o.Load.Threads < 1 || o.Load.Connections < o.Load.Threads || o.Load.Duration < time.Second {
		fmt.Fprintln(os.Stderr, "bench: need -rounds >= 1, -threads >= 1, -connections >= -threads and -duration >= 1s")
		return 2
	}
	if _, err := exec.LookPath(o.Load.Wrk); err != nil {
		fmt.Fprintf(os.Stderr, "bench: wrk not found (%v); install it (apt-get install -y wrk) or run make bench\n", err)
		return 1
	}
	repo, err := harness.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	o.Module = filepath.Join(repo, "integration")
	if *out == "" {
		*out = filepath.Join(repo, "bench-results")
	}
	stamp := time.Now().UTC().Format("20060102T150405Z")
	o.OutDir = filepath.Join(*out, stamp)
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	o.Logf = logf

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bench.Run(ctx, o)
	if werr := res.WriteFiles(o.OutDir); werr != nil {
		logf("bench: write results to %s: %v", o.OutDir, werr)
	}
	latest := filepath.Join(*out, "latest")
	_ = os.Remove(latest)
	_ = os.Symlink(stamp, latest)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: FAILED after %s: %v\n(results so far and component logs in %s)\n", time.Since(res.Started).Round(time.Second), err, o.OutDir)
		return 1
	}
	fmt.Printf("results: %s (report.txt, results.json, throughput.svg, wrk/, work/stack/logs/)\n\n", o.OutDir)
	res.WriteReport(os.Stdout)
	if len(res.Problems) > 0 {
		return 1
	}
	if *strict {
		for _, t := range res.CheckTargets() {
			if !t.Met {
				return 1
			}
		}
	}
	return 0
}

// rerender rebuilds a run's report and chart from its results.json.
func rerender(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	var res bench.Results
	if err := json.Unmarshal(data, &res); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %s is not a results.json: %v\n", path, err)
		return 1
	}
	if err := res.WriteFiles(filepath.Dir(path)); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	res.WriteReport(os.Stdout)
	return 0
}
