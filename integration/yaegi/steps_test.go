package yaegi_test

import (
	"net/http"
	"testing"

	"github.com/edgepass/edgepass/internal/servebench"
	"github.com/traefik/yaegi/interp"
	"github.com/traefik/yaegi/stdlib"
)

// stepsPrelude is shared by every step of BenchmarkYaegiFastPathSteps: the
// shape of the plugin's line-index entry and a constructor filling the index
// with the benchmark request's line.
const stepsPrelude = `
import (
	"io"
	"net/http"
	"sync"
)

type entry struct {
	keep      map[string]bool
	hdrNames  []string
	hdrValues [][]string
}

var refuseWrites = closedPipe()

func closedPipe() *io.PipeWriter {
	_, w := io.Pipe()
	w.Close()
	return w
}

type handler struct {
	next  http.Handler
	fast  *sync.Map
	ident [][]string
}

func newHandler(next http.Handler, line string, keep map[string]bool) http.Handler {
	names := []string{"X-Auth-User", "X-Auth-Email", "X-Auth-Groups"}
	values := [][]string{{"alice"}, {"alice@example.com"}, {"dev,ops"}}
	m := &handler{next: next, fast: &sync.Map{}, ident: values}
	m.fast.Store(line, &entry{keep: keep, hdrNames: names, hdrValues: values})
	return m
}
`

// lookupStep wraps body (run when the line's decision is found, e in scope)
// in the plugin's line lookup.
func lookupStep(body string) string {
	return `
	h := r.Header
	line := h["Cookie"]
	if line == nil {
		line = h["Authorization"]
	}
	if len(line) == 1 {
		v, _ := m.fast.Load(line[0])
		if e, ok := v.(*entry); ok {` + body + `
			m.next.ServeHTTP(rw, r)
			return
		}
	}
	panic("miss")`
}

const (
	headerCheckStep = `
			if h.WriteSubset(refuseWrites, e.keep) != nil {
				panic("spoofed")
			}`
	setHeadersStep = `
			for i, name := range e.hdrNames {
				h[name] = e.hdrValues[i]
			}`
)

// fastPathSteps builds the plugin's cached path one step at a time, each a
// whole ServeHTTP body; the last is the shape of edgepass's ServeHTTP.
var fastPathSteps = []struct{ name, body string }{
	{"0-call-next", `
	m.next.ServeHTTP(rw, r)`},
	{"1-floor-plugin", `
	h := r.Header
	delete(h, "X-Auth-User")
	delete(h, "X-Auth-Email")
	delete(h, "X-Auth-Groups")
	h["X-Auth-User"] = m.ident[0]
	h["X-Auth-Email"] = m.ident[1]
	h["X-Auth-Groups"] = m.ident[2]
	m.next.ServeHTTP(rw, r)`},
	{"2-line-lookup", lookupStep(`
			_ = e`)},
	{"3-lookup+header-check", lookupStep(headerCheckStep)},
	{"4-lookup+check+set-headers", lookupStep(headerCheckStep + setHeadersStep)},
}

// BenchmarkYaegiFastPathSteps prices, under Yaegi, each thing the plugin's
// cached path must do: entering an interpreted ServeHTTP and calling next
// (any plugin), the floor plugin of make bench -floor, finding the line's
// decision (one compiled sync.Map call), proving no header outside the known
// set is present (one compiled WriteSubset call) and setting three identity
// headers. Compare step 4 with BenchmarkYaegiServeHTTP/cached (the plugin
// itself) and step 1 (what the floor route costs).
func BenchmarkYaegiFastPathSteps(b *testing.B) {
	for _, step := range fastPathSteps {
		b.Run(step.name, func(b *testing.B) {
			i := interp.New(interp.Options{})
			if err := i.Use(stdlib.Symbols); err != nil {
				b.Fatal(err)
			}
			src := stepsPrelude + "\nfunc (m *handler) ServeHTTP(rw http.ResponseWriter, r *http.Request) {" + step.body + "\n}\n"
			if _, err := i.Eval(src); err != nil {
				b.Fatalf("%s: %v", step.name, err)
			}
			v, err := i.Eval("newHandler")
			if err != nil {
				b.Fatal(err)
			}
			r := servebench.Request("token")
			keep := map[string]bool{}
			for k := range r.Header {
				keep[k] = true
			}
			h := v.Interface().(func(http.Handler, string, map[string]bool) http.Handler)(servebench.NopNext{}, r.Header["Cookie"][0], keep)
			servebench.Loop(b, h, r, false)
		})
	}
}
