package yaegi_test

import (
	_ "embed"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/traefik/yaegi/interp"
	"github.com/traefik/yaegi/stdlib"

	"github.com/edgepass/edgepass/integration/yaegi/fastpath"
	"github.com/edgepass/edgepass/internal/servebench"
)

// fastpathSource is package fastpath, loaded from source under Yaegi (the
// compiled benchmark binary runs where the repository may not be).
//
//go:embed fastpath/fastpath.go
var fastpathSource []byte

const fastpathImport = "github.com/edgepass/edgepass/integration/yaegi/fastpath"

// BenchmarkYaegiFastPathSteps prices, under Yaegi, each thing the plugin's
// cached path must do: entering an interpreted ServeHTTP and calling next
// (any plugin), the floor plugin of make bench -floor, finding the line's
// decision (one compiled sync.Map call), proving no header outside the known
// set is present (one compiled WriteSubset call) and setting three identity
// headers (package fastpath). Compare step 4 with
// BenchmarkYaegiServeHTTP/cached (the plugin itself) and step 1 (what the
// floor route costs).
func BenchmarkYaegiFastPathSteps(b *testing.B) {
	goPath := b.TempDir()
	dir := filepath.Join(goPath, "src", filepath.FromSlash(fastpathImport))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "fastpath.go"), fastpathSource, 0o644); err != nil {
		b.Fatal(err)
	}
	for step, name := range fastpath.Steps {
		b.Run(name, func(b *testing.B) {
			i := interp.New(interp.Options{GoPath: goPath})
			if err := i.Use(stdlib.Symbols); err != nil {
				b.Fatal(err)
			}
			if _, err := i.Eval(`import "` + fastpathImport + `"`); err != nil {
				b.Fatal(err)
			}
			v, err := i.Eval("fastpath.New")
			if err != nil {
				b.Fatal(err)
			}
			r := servebench.Request("token")
			keep := map[string]bool{}
			for k := range r.Header {
				keep[k] = true
			}
			newStep := v.Interface().(func(int, http.Handler, string, map[string]bool) http.Handler)
			servebench.Loop(b, newStep(step, servebench.NopNext{}, r.Header["Cookie"][0], keep), r, false)
		})
	}
}
