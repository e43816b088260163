// Package yaegicheck refuses, in the plugin's source, Go that Yaegi v0.16.1
// (the interpreter Traefik runs plugins in) cannot load or runs wrongly,
// where the compiler and go vet see nothing wrong: the Go 1.21 builtins,
// generics, range over an integer or a function, and the interpreter bugs
// listed in docs/architecture.md. It parses and type-checks every .go file
// under the directories it is given, tests included (integration/yaegi runs
// them under Yaegi too), in about a third of a second: make lint and
// scripts/pre-commit run it, long before the Yaegi tests would fail.
//
// Every rule was checked against Yaegi v0.16.1 itself (a small program run by
// interp.New with stdlib.Symbols, as Traefik does): each refused construct
// fails to load, panics or computes a wrong value there, and the
// neighbouring constructs it accepts run correctly (the accepted cases of
// yaegicheck_test.go). Standard-library API newer than the module's go line
// is go vet's (stdversion), not this. The list, with what to write instead,
// is docs/architecture.md's I1; a "//yaegicheck:ignore <reason>" line
// accepts a finding on its own line or the next, for code that never runs
// under Yaegi.
package yaegicheck

import (
	"bufio"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Finding is one refused construct.
type Finding struct {
	Pos  token.Position
	Rule string
	Msg  string
}

func (f Finding) String() string {
	return fmt.Sprintf("%s: %s", f.Pos, f.Msg)
}

// Checker type-checks packages of one module and applies the rules.
type Checker struct {
	fset    *token.FileSet
	modRoot string // directory holding go.mod
	modPath string // its module path
	std     types.Importer
	local   map[string]*types.Package // module packages without their tests
	exports map[string]string         // standard package -> its export data file
}

// New returns a checker for the module rooted at modRoot.
func New(modRoot string) (*Checker, error) {
	modPath, err := modulePath(filepath.Join(modRoot, "go.mod"))
	if err != nil {
		return nil, err
	}
	c := &Checker{
		fset:    token.NewFileSet(),
		modRoot: modRoot,
		modPath: modPath,
		local:   make(map[string]*types.Package),
		exports: make(map[string]string),
	}
	c.std = importer.ForCompiler(c.fset, "gc", c.lookupExport)
	return c, nil
}

// prefetch finds the export data of the standard packages files import (and
// their dependencies) with one go list: type-checking the standard library
// from source would take seconds.
func (c *Checker) prefetch(files []*ast.File) error {
	var need []string
	for _, f := range files {
		for _, imp := range f.Imports {
			path := strings.Trim(imp.Path.Value, `"`)
			if _, ok := c.exports[path]; !ok && !c.isLocal(path) && path != "unsafe" && path != "C" {
				need = append(need, path)
			}
		}
	}
	if len(need) == 0 {
		return nil
	}
	args := append([]string{"list", "-e", "-export", "-deps", "-f", "{{if .Export}}{{.ImportPath}}={{.Export}}{{end}}"}, need...)
	cmd := exec.Command("go", args...)
	cmd.Dir = c.modRoot
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("yaegicheck: go list the standard packages: %w", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if path, file, ok := strings.Cut(line, "="); ok {
			c.exports[path] = file
		}
	}
	for _, path := range need {
		if _, ok := c.exports[path]; !ok {
			c.exports[path] = "" // not found: the type-check says so
		}
	}
	return nil
}

func (c *Checker) lookupExport(path string) (io.ReadCloser, error) {
	file := c.exports[path]
	if file == "" {
		return nil, fmt.Errorf("no export data for %q", path)
	}
	return os.Open(file)
}

func (c *Checker) isLocal(path string) bool {
	return path == c.modPath || strings.HasPrefix(path, c.modPath+"/")
}

func modulePath(goMod string) (string, error) {
	f, err := os.Open(goMod)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`), nil
		}
	}
	return "", fmt.Errorf("%s: no module line", goMod)
}

// CheckTree checks every package under dir (relative to the module root or
// absolute), skipping testdata. Positions are relative to the module root.
func (c *Checker) CheckTree(dir string) ([]Finding, error) {
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(c.modRoot, dir)
	}
	var dirs []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != dir && (name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			dirs = append(dirs, path)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var all []Finding
	for _, d := range dirs {
		fs, err := c.CheckDir(d)
		if err != nil {
			return nil, err
		}
		all = append(all, fs...)
	}
	return all, nil
}

// CheckDir checks the package in dir with its test files (an external _test
// package apart).
func (c *Checker) CheckDir(dir string) ([]Finding, error) {
	files, err := c.parseDir(dir, true)
	if err != nil || len(files) == 0 {
		return nil, err
	}
	byPkg := make(map[string][]*ast.File)
	var names []string
	for _, f := range files {
		n := f.Name.Name
		if byPkg[n] == nil {
			names = append(names, n)
		}
		byPkg[n] = append(byPkg[n], f)
	}
	sort.Strings(names) // x before x_test
	var out []Finding
	for _, n := range names {
		fs, err := c.checkFiles(c.importPath(dir), byPkg[n])
		if err != nil {
			return nil, err
		}
		out = append(out, fs...)
	}
	return out, nil
}

// CheckSource checks one file's source (for tests).
func (c *Checker) CheckSource(name, src string) ([]Finding, error) {
	f, err := parser.ParseFile(c.fset, name, src, parser.ParseComments|parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	return c.checkFiles("example.com/snippet", []*ast.File{f})
}

func (c *Checker) checkFiles(path string, files []*ast.File) ([]Finding, error) {
	info := &types.Info{
		Types:     make(map[ast.Expr]types.TypeAndValue),
		Uses:      make(map[*ast.Ident]types.Object),
		Instances: make(map[*ast.Ident]types.Instance),
	}
	if err := c.prefetch(files); err != nil {
		return nil, err
	}
	conf := types.Config{Importer: importerFunc(c.importPkg)}
	if _, err := conf.Check(path, c.fset, files, info); err != nil {
		return nil, fmt.Errorf("yaegicheck: type-check %s: %w", path, err)
	}
	var all []Finding
	for _, f := range files {
		all = append(all, c.checkFile(f, info)...)
	}
	all = append(all, c.checkInstances(info)...)
	ignored := c.ignoreLines(files)
	var out []Finding
	for _, f := range all {
		if !ignored[f.Pos.Filename][f.Pos.Line] {
			out = append(out, f)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Pos, out[j].Pos
		if a.Filename != b.Filename {
			return a.Filename < b.Filename
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	return out, nil
}

// Ignore is the directive that accepts a finding on its own line or the
// next one, for code that provably never runs under Yaegi; a reason must
// follow it ("//yaegicheck:ignore native only: ...").
const Ignore = "//yaegicheck:ignore "

func (c *Checker) ignoreLines(files []*ast.File) map[string]map[int]bool {
	out := make(map[string]map[int]bool)
	for _, f := range files {
		for _, g := range f.Comments {
			for _, cm := range g.List {
				if !strings.HasPrefix(cm.Text, Ignore) || strings.TrimSpace(cm.Text[len(Ignore):]) == "" {
					continue
				}
				pos := c.fset.Position(cm.Pos())
				if out[pos.Filename] == nil {
					out[pos.Filename] = make(map[int]bool)
				}
				out[pos.Filename][pos.Line] = true
				out[pos.Filename][pos.Line+1] = true
			}
		}
	}
	return out
}

type importerFunc func(path string) (*types.Package, error)

func (f importerFunc) Import(path string) (*types.Package, error) { return f(path) }

// importPkg type-checks a package of this module from source (without its
// tests) and leaves the standard library to the source importer.
func (c *Checker) importPkg(path string) (*types.Package, error) {
	rel, ok := strings.CutPrefix(path, c.modPath+"/")
	if !ok {
		return c.std.Import(path)
	}
	if p := c.local[path]; p != nil {
		return p, nil
	}
	files, err := c.parseDir(filepath.Join(c.modRoot, filepath.FromSlash(rel)), false)
	if err != nil {
		return nil, err
	}
	if err := c.prefetch(files); err != nil {
		return nil, err
	}
	conf := types.Config{Importer: importerFunc(c.importPkg)}
	p, err := conf.Check(path, c.fset, files, nil)
	if err != nil {
		return nil, err
	}
	c.local[path] = p
	return p, nil
}

func (c *Checker) importPath(dir string) string {
	rel, err := filepath.Rel(c.modRoot, dir)
	if err != nil || rel == "." {
		return c.modPath
	}
	return c.modPath + "/" + filepath.ToSlash(rel)
}

func (c *Checker) parseDir(dir string, tests bool) ([]*ast.File, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []*ast.File
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || (!tests && strings.HasSuffix(name, "_test.go")) {
			continue
		}
		path := filepath.Join(dir, name)
		display := path
		if rel, err := filepath.Rel(c.modRoot, path); err == nil {
			display = rel
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		f, err := parser.ParseFile(c.fset, display, src, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
