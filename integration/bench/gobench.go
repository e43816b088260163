package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/edgepass/edgepass/integration/harness"
)

// GoBenchResult is one line of `go test -bench` output: the benchmark's
// name (without the -GOMAXPROCS suffix) and its metrics by unit ("ns/op",
// "B/op", and any b.ReportMetric unit such as "p99-ms").
type GoBenchResult struct {
	Name       string
	Iterations int64
	Metrics    map[string]float64
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+(.*)$`)

// ParseGoBench parses the result lines of `go test -bench` output; other
// lines (goos, PASS, logs) are skipped.
func ParseGoBench(out string) ([]GoBenchResult, error) {
	var res []GoBenchResult
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		iters, err := strconv.ParseInt(m[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("go bench output: bad iteration count in %q", sc.Text())
		}
		f := strings.Fields(m[3])
		if len(f) == 0 || len(f)%2 != 0 {
			return nil, fmt.Errorf("go bench output: metrics are not value/unit pairs in %q", sc.Text())
		}
		r := GoBenchResult{Name: m[1], Iterations: iters, Metrics: map[string]float64{}}
		for i := 0; i < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("go bench output: bad value %q in %q", f[i], sc.Text())
			}
			r.Metrics[f[i+1]] = v
		}
		res = append(res, r)
	}
	return res, sc.Err()
}

// GoBench is a package's benchmarks, compiled ahead so that compiling does
// not compete with the load test for the CPU.
type GoBench struct {
	Module string // directory of the go.mod (integration/)
	Pkg    string // "./yaegi"
	Bin    string // compiled test binary
}

// CompileGoBench builds the package's test binary into dir.
func CompileGoBench(ctx context.Context, module, pkg, dir string) (*GoBench, error) {
	if _, err := os.Stat(filepath.Join(module, pkg)); err != nil {
		return nil, fmt.Errorf("bench: go benchmarks: package %s: %w", pkg, err)
	}
	bin := filepath.Join(dir, strings.ReplaceAll(strings.Trim(pkg, "./"), "/", "_")+".test")
	cmd := exec.CommandContext(ctx, "go", "test", "-c", "-o", bin, pkg)
	cmd.Dir = module
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("bench: go benchmarks: cannot compile the tests of %s (cd %s && go test -c %s): %v\n%s", pkg, module, pkg, err, strings.TrimSpace(string(out)))
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("bench: go benchmarks: %s has no test files", pkg)
	}
	return &GoBench{Module: module, Pkg: pkg, Bin: bin}, nil
}

// Run runs the benchmarks matching pattern (no tests) in the package's
// directory, as `go test` would; extra are more -test.* flags.
func (g *GoBench) Run(ctx context.Context, pattern, benchtime string, timeout time.Duration, extra ...string) ([]GoBenchResult, string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	args := append([]string{"-test.run", "^$", "-test.bench", pattern, "-test.benchtime", benchtime, "-test.benchmem", "-test.count", "1"}, extra...)
	cmd := exec.CommandContext(ctx, g.Bin, args...)
	cmd.Dir = filepath.Join(g.Module, g.Pkg)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return nil, out.String(), fmt.Errorf("bench: go benchmarks %s -bench %q: %v\n%s", g.Pkg, pattern, err, harness.LastLines(out.String(), 30))
	}
	res, perr := ParseGoBench(out.String())
	if perr != nil {
		return nil, out.String(), perr
	}
	if len(res) == 0 {
		return nil, out.String(), fmt.Errorf("bench: go benchmarks %s: no benchmark matched %q:\n%s", g.Pkg, pattern, harness.LastLines(out.String(), 10))
	}
	return res, out.String(), nil
}
