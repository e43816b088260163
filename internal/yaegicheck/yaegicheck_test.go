package yaegicheck

import (
	"strings"
	"testing"
)

// Each case is a file the checker must refuse (rule set) or accept (rule
// empty). The accepted ones are the neighbours of each refused construct
// that Yaegi v0.16.1 runs correctly: a rule must not cost working code.
var cases = []struct {
	name, rule, src string
}{
	// The Go 1.21 builtins: "undefined: min" at load.
	{"min builtin", ruleBuiltin, `func f(a, b int) int { return min(a, b) }`},
	{"max builtin", ruleBuiltin, `func f(a, b int) int { return max(a, b) }`},
	{"clear builtin", ruleBuiltin, `func f(m map[string]int) { clear(m) }`},
	{"a parameter named max is no builtin", "", `func f(s []int, max int) []int { if len(s) > max { return s[:max] }; return s }`},
	{"a function named min is no builtin", "", `func min(a, b int) int { if a < b { return a }; return b }
func f() int { return min(1, 2) }`},

	// Range over an integer or a function: "panic: nil type".
	{"range over int", ruleRange, `func f() (n int) { for i := range 3 { n += i }; return }`},
	{"range over func", ruleRange, `func seq(yield func(int) bool) {}
func f() { for i := range seq { _ = i } }`},
	{"range over slice, map, string, channel", "", `func f(s []int, m map[string]int, str string, ch chan int) {
	for range s {}
	for k := range m { _ = k }
	for _, r := range str { _ = r }
	for v := range ch { _ = v }
}`},

	// Generics: partial in Yaegi.
	{"generic function", ruleGeneric, `func Map[T any](s []T) []T { return s }`},
	{"generic type", ruleGeneric, `type Box[T any] struct{ v T }`},
	{"atomic.Pointer", ruleStdGeneric, `import "sync/atomic"
type T struct{}
var p atomic.Pointer[T]`},
	{"slices.Sort", ruleStdGeneric, `import "slices"
func f(s []int) { slices.Sort(s) }`},
	{"maps.Clone", ruleStdGeneric, `import "maps"
func f(m map[string]int) map[string]int { return maps.Clone(m) }`},
	{"slices.Contains runs", "", `import "slices"
func f(s []string) bool { return slices.Contains(s, "a") && slices.Index(s, "b") >= 0 }`},
	{"typed atomics and atomic.Value run", "", `import "sync/atomic"
type S struct { a atomic.Int64; b atomic.Bool; c atomic.Uint32; d atomic.Value }
func f(s *S) int64 { s.b.Store(true); s.d.Store(1); return s.a.Add(1) + int64(s.c.Load()) }`},

	// Imports outside Yaegi's standard library.
	{"unsafe", ruleImport, `import "unsafe"
var _ = unsafe.Sizeof(0)`},
	{"syscall", ruleImport, `import "syscall"
var _ = syscall.Getpid`},
	{"os/exec", ruleImport, `import "os/exec"
var _ = exec.Command`},

	// //go:build alone is ignored by Yaegi.
	{"go:build alone", ruleBuildTag, "//go:build ignore\n\npackage p\n"},
	{"go:build with its +build twin", "", "//go:build !yaegi\n// +build !yaegi\n\npackage p\n"},

	// A receive in a return: "reflect.Value.Set using unaddressable value".
	{"return <-ch, nil", ruleRecvReturn, `func f(ch chan int) (int, error) { return <-ch, nil }`},
	{"return <-ch", ruleRecvReturn, `func f(ch chan int) int { return <-ch }`},
	{"receive first, then return", "", `func f(ch chan int) (int, error) { v := <-ch; return v, nil }`},

	// A builtin as a later result of a return lands in the first result.
	{"return x, append(...)", ruleReturnBuiltin, `func f(a, b []string) ([]string, []string) { return a, append([]string(nil), b...) }`},
	{"return 1, len(v)", ruleReturnBuiltin, `func f(v []int) (int, int) { return 1, len(v) }`},
	{"return len(v) first", "", `func f(v []int) (int, bool) { return len(v), true }`},
	{"return v, call()", "", `import "strings"
func g() int { return 1 }
func f(s string) (string, int) { return strings.TrimSpace(s), g() }`},

	// Parallel assignments mixing values Yaegi writes directly with others.
	{"a, b = call(), const", ruleParallel, `func g() int { return 9 }
func f() (x, y int) { x, y = g(), 4; return }`},
	{"a, b = const, call()", ruleParallel, `func g() int { return 9 }
func f() (x, y int) { x, y = 4, g(); return }`},
	{"p.a, p.b = call(), var (snapshot chunk)", ruleParallel, `type P struct{ K string; I int }
func key(i int) string { return "" }
func f(p *P, i int) { p.K, p.I = key(i), i }`},
	{"a, b = var, len(s)", ruleParallel, `func f(s []int, v int) (x, y int) { x, y = v, len(s); return }`},
	{"a, b := composite, const", ruleParallel, `func f() { a, b := []int{1}, 5; _, _ = a, b }`},
	{"var a, b = composite, const", ruleParallel, `func f() { var a, b = []int{1}, 5; _, _ = a, b }`},
	{"a, b = <-ch, const", ruleParallel, `func f(ch chan int) (x, y int) { x, y = <-ch, 6; return }`},
	{"a, b := call(), const", "", `func g() int { return 9 }
func f() { a, b := g(), 4; _, _ = a, b }`},
	{"a, b = call(), call()", "", `func g() int { return 9 }
func f() (x, y int) { x, y = g(), g(); return }`},
	{"a, b = conversion, const", "", `func f(k int) (x int64, y int) { x, y = int64(k), 4; return }`},
	{"a, b = nil, true", ruleNilParallel, `func f() (p *int, b bool) { p, b = nil, true; return }`},
	{"p.x, p.y = nil, true", ruleNilParallel, `type P struct{ x *int; y bool }
func f(p *P) { p.x, p.y = nil, true }`},
	{"return nil, true", "", `func f() (*int, bool) { return nil, true }`},
	{"swap", "", `func f(x, y int) (int, int) { x, y = y, x; return x, y }`},
	{"a, b = &composite, const", "", `type T struct{ A int }
func f() (p *T, n int) { p, n = &T{A: 1}, 6; return }`},

	// Methods with a named receiver and unnamed parameters.
	{"named receiver, unnamed params", ruleUnnamedArgs, `type F struct{ r bool }
func (f F) Revoked(string, int) bool { return f.r }`},
	{"named receiver, blank params", "", `type F struct{ r bool }
func (f F) Revoked(_ string, _ int) bool { return f.r }`},
	{"unnamed receiver and params", "", `type F struct{}
func (F) Revoked(string) bool { return true }`},
	{"function with unnamed params", "", `func g(string, int) bool { return true }`},

	// select.
	{"case v = <-ch", ruleSelectAssign, `func f(a chan int) (v int) { select { case v = <-a: }; return }`},
	{"case v := <-ch", "", `func f(a chan int) (v int) { select { case x := <-a: v = x }; return }`},
	{"break label in a select case", ruleSelectBranch, `func f(a, d chan int) {
loop:
	for {
		select {
		case <-a:
		case <-d:
			break loop
		}
	}
}`},
	{"continue label in a select case", ruleSelectBranch, `func f(a chan int) {
outer:
	for i := 0; i < 3; i++ {
		for {
			select {
			case <-a:
				continue outer
			}
		}
	}
}`},
	{"break label in a switch case", "", `func f(n int) {
outer:
	for {
		switch {
		case n > 3:
			break outer
		}
		n++
	}
}`},

	// A tagless switch tests only a case's first condition.
	{"case a, b: without a tag", ruleSwitchList, `func f(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		return true
	}
	return false
}`},
	{"case 1, 2: with a tag", "", `func f(x int) bool { switch x { case 1, 2: return true }; return false }`},

	// encoding/json cannot call an interpreted type's decoding methods.
	{"UnmarshalJSON", ruleUnmarshaler, `type Aud []string
func (a *Aud) UnmarshalJSON(b []byte) error { return nil }`},
	{"UnmarshalText", ruleUnmarshaler, `type U struct{ v string }
func (u *U) UnmarshalText(b []byte) error { return nil }`},
	{"a reasoned ignore directive", "", `type Aud []string
//yaegicheck:ignore native only: the plugin decodes a wire form
func (a *Aud) UnmarshalJSON(b []byte) error { return nil }`},
	{"an ignore directive without a reason", ruleUnmarshaler, `type Aud []string
//yaegicheck:ignore
func (a *Aud) UnmarshalJSON(b []byte) error { return nil }`},
	{"MarshalJSON runs", "", `type P struct{ N int }
func (p *P) MarshalJSON() ([]byte, error) { return []byte("1"), nil }`},

	// errors.As into a type of interpreted code.
	{"errors.As into a local type", ruleErrorsAs, `import ("errors"; "fmt")
type FieldError struct{ Field string }
func (e *FieldError) Error() string { return e.Field }
func f() bool { var fe *FieldError; return errors.As(fmt.Errorf("x: %w", &FieldError{}), &fe) }`},
	{"errors.As into a standard type", "", `import ("errors"; "net")
func f(err error) bool { var ne net.Error; var oe *net.OpError; return errors.As(err, &ne) || errors.As(err, &oe) }`},
}

func TestRules(t *testing.T) {
	c, err := New("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.src
			if !strings.HasPrefix(src, "//") {
				src = "package p\n\n" + src + "\n"
			}
			fs, err := c.CheckSource("p.go", src)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.rule == "" && len(fs) > 0:
				t.Fatalf("refused code Yaegi runs: %v", fs)
			case tc.rule != "" && (len(fs) != 1 || fs[0].Rule != tc.rule):
				t.Fatalf("want one %s finding, got %v", tc.rule, fs)
			case tc.rule != "" && !strings.Contains(fs[0].Msg, "Yaegi v0.16.1"):
				t.Fatalf("message %q does not say why", fs[0].Msg)
			}
		})
	}
}

// The message format make lint prints: path:line:col: what, why, what instead.
func TestFindingFormat(t *testing.T) {
	c, err := New("../..")
	if err != nil {
		t.Fatal(err)
	}
	fs, err := c.CheckSource("plugin/x.go", "package p\n\nfunc f(a, b int) int {\n\treturn min(a, b)\n}\n")
	if err != nil || len(fs) != 1 {
		t.Fatalf("%v %v", fs, err)
	}
	want := "plugin/x.go:4:9: min() builtin: Yaegi v0.16.1 cannot run it (undefined: min); write the comparison"
	if got := fs[0].String(); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// A package tree of the plugin loads, imports of the module resolved from
// source (make lint runs the command on all of plugin/).
func TestChecksAPackageTree(t *testing.T) {
	c, err := New("../..")
	if err != nil {
		t.Fatal(err)
	}
	fs, err := c.CheckTree("plugin/edgestate")
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 0 {
		t.Fatalf("plugin/edgestate: %v", fs)
	}
}
