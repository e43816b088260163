package yaegi_test

import (
	"os"
	"path"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/traefik/yaegi/interp"
	"github.com/traefik/yaegi/stdlib"

	"github.com/edgepass/edgepass/integration/harness"
	"github.com/edgepass/edgepass/internal/yaegicheck"
)

// notUnderYaegi are the plugin's test files Yaegi does not load, and why.
var notUnderYaegi = map[string]string{
	"plugin/bench_test.go": "imports internal/servebench, which reads the process's CPU time through syscall (not in Yaegi's standard library); BenchmarkYaegiServeHTTP is its interpreted twin",
}

// skipUnderYaegi are tests (by package directory, then name) that Yaegi
// does not run, and why. Each entry is a debt: a test that runs natively only
// proves nothing about Traefik.
var skipUnderYaegi = map[string]map[string]string{}

// TestYaegiPackageTests runs every plugin package's own tests — its _test.go
// files, unchanged — under Yaegi v0.16.1 as Traefik sets it up (stdlib
// symbols only, no unsafe, sources from a GOPATH tree), the way `yaegi test`
// does: the interpreter loads the package with its tests and the compiled
// testing package runs each Test function. So the code Traefik interprets is
// proven by the same tests that prove it natively; the Traefik-faithful
// loader (loader_test.go) is left to New, CreateConfig and the configuration
// decoding. make lint's yaegicheck catches most of what would fail here
// sooner. Benchmarks and fuzz targets run natively only.
func TestYaegiPackageTests(t *testing.T) {
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	goPath := t.TempDir()
	if err := harness.CopyPluginTo(root, goPath); err != nil {
		t.Fatal(err)
	}
	tests, err := harness.PluginTestFiles(root)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	dirs := map[string]bool{}
	for _, f := range tests {
		f = filepath.ToSlash(f)
		if _, ok := notUnderYaegi[f]; ok {
			continue
		}
		files = append(files, f)
		dirs[path.Dir(f)] = true
	}
	if err := harness.CopyFilesTo(root, goPath, files); err != nil {
		t.Fatal(err)
	}
	for dir := range skipUnderYaegi {
		if !dirs[dir] {
			t.Errorf("skipUnderYaegi names %s, which has no tests", dir)
		}
	}
	var sorted []string
	for d := range dirs {
		sorted = append(sorted, d)
	}
	sort.Strings(sorted)
	for _, dir := range sorted {
		t.Run(dir, func(t *testing.T) {
			// One package at a time: natsedge's tests wait on timers,
			// and a busy machine makes them late.
			runPackageTests(t, goPath, dir)
		})
	}
}

// runPackageTests loads the package in dir (relative to the repository) with
// its tests into a fresh interpreter and runs its Test functions as subtests.
func runPackageTests(t *testing.T, goPath, dir string) {
	pkg := harness.PluginModule + "/" + dir
	i := interp.New(interp.Options{GoPath: goPath, Env: os.Environ()})
	if err := i.Use(stdlib.Symbols); err != nil {
		t.Fatal(err)
	}
	if err := i.EvalTest(pkg); err != nil {
		t.Fatalf("yaegi cannot load %s with its tests (make lint's yaegicheck may say why): %v", dir, err)
	}
	syms := i.Symbols(pkg)[pkg]
	tests := map[string]func(*testing.T){}
	for name, v := range syms {
		if fn, ok := testFunc(name, v); ok {
			tests[name] = fn
		}
	}
	if len(tests) == 0 {
		t.Fatalf("no tests found in %s under yaegi", dir)
	}
	skips := skipUnderYaegi[dir]
	for name := range skips {
		if tests[name] == nil {
			t.Errorf("skipUnderYaegi names %s.%s, which does not exist", dir, name)
		}
	}
	names := make([]string, 0, len(tests))
	for name := range tests {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if reason, ok := skips[name]; ok {
			t.Run(name, func(t *testing.T) { t.Skip(reason) })
			continue
		}
		t.Run(name, tests[name])
	}
}

func testFunc(name string, v reflect.Value) (func(*testing.T), bool) {
	if !strings.HasPrefix(name, "Test") || !v.IsValid() || v.Kind() != reflect.Func {
		return nil, false
	}
	fn, ok := v.Interface().(func(*testing.T))
	return fn, ok
}

// make lint's yaegicheck lets the plugin import exactly the standard
// packages Yaegi v0.16.1 provides.
func TestYaegiCheckListsMatchYaegi(t *testing.T) {
	want := map[string]bool{}
	for key := range stdlib.Symbols {
		// Keys are "<import path>/<package name>"; "." and yaegi's own
		// stdlib package are no standard packages.
		if key == "." || strings.HasPrefix(key, "github.com/traefik/yaegi/") {
			continue
		}
		want[path.Dir(key)] = true
	}
	got := map[string]bool{}
	for _, p := range yaegicheck.YaegiStdlib() {
		got[p] = true
		if !want[p] {
			t.Errorf("yaegicheck lets the plugin import %s, which Yaegi does not provide", p)
		}
	}
	for p := range want {
		if !got[p] {
			t.Errorf("Yaegi provides %s, which yaegicheck refuses", p)
		}
	}
}
