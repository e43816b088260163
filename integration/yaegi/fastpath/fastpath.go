// Package fastpath builds the plugin's cached request path one step at a
// time, each step a whole ServeHTTP, for BenchmarkYaegiFastPathSteps to run
// under Yaegi (it loads this file from source, as Traefik loads the plugin).
// Step 4 has the shape of edgepass's ServeHTTP (plugin/edgepass.go) on a line
// found in the index; BenchmarkYaegiServeHTTP/cached measures the plugin
// itself next to it, so the two rows drifting apart shows this model went
// stale. Compiled natively too, so gofmt, vet and the compiler check it.
package fastpath

import (
	"io"
	"net/http"
	"sync"
)

// Steps names the steps, in order: New(i, …) builds step i.
var Steps = []string{
	"0-call-next",
	"1-floor-plugin",
	"2-line-lookup",
	"3-lookup+header-check",
	"4-lookup+check+set-headers",
}

// entry is the part of the plugin's indexed decision the cached path reads.
type entry struct {
	keep      map[string]bool
	hdrNames  []string
	hdrValues [][]string
}

// refuseWrites fails every write, as the plugin's (plugin/headers.go).
var refuseWrites = closedPipe()

func closedPipe() *io.PipeWriter {
	_, w := io.Pipe()
	_ = w.Close()
	return w
}

type base struct {
	next  http.Handler
	fast  *sync.Map
	ident [][]string
}

// New returns step i, with line (the request's Cookie line) indexed and keep
// the header names the request may bring.
func New(i int, next http.Handler, line string, keep map[string]bool) http.Handler {
	names := []string{"X-Auth-User", "X-Auth-Email", "X-Auth-Groups"}
	values := [][]string{{"alice"}, {"alice@example.com"}, {"dev,ops"}}
	b := base{next: next, fast: &sync.Map{}, ident: values}
	b.fast.Store(line, &entry{keep: keep, hdrNames: names, hdrValues: values})
	switch i {
	case 0:
		return &callNext{b}
	case 1:
		return &floor{b}
	case 2:
		return &lookup{b}
	case 3:
		return &lookupCheck{b}
	default:
		return &lookupCheckSet{b}
	}
}

// callNext: entering an interpreted ServeHTTP and calling next (any plugin).
type callNext struct{ base }

func (m *callNext) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	m.next.ServeHTTP(rw, r)
}

// floor: the floor plugin of make bench -floor (delete three headers, set three).
type floor struct{ base }

func (m *floor) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	h := r.Header
	delete(h, "X-Auth-User")
	delete(h, "X-Auth-Email")
	delete(h, "X-Auth-Groups")
	h["X-Auth-User"] = m.ident[0]
	h["X-Auth-Email"] = m.ident[1]
	h["X-Auth-Groups"] = m.ident[2]
	m.next.ServeHTTP(rw, r)
}

// lookup: finding the line's decision (one compiled sync.Map call).
type lookup struct{ base }

func (m *lookup) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	h := r.Header
	line := h["Cookie"]
	if line == nil {
		line = h["Authorization"]
	}
	if len(line) == 1 {
		v, _ := m.fast.Load(line[0])
		if e, ok := v.(*entry); ok {
			_ = e
			m.next.ServeHTTP(rw, r)
			return
		}
	}
	panic("miss")
}

// lookupCheck: + proving no header outside the known set is present (one
// compiled WriteSubset call).
type lookupCheck struct{ base }

func (m *lookupCheck) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	h := r.Header
	line := h["Cookie"]
	if line == nil {
		line = h["Authorization"]
	}
	if len(line) == 1 {
		v, _ := m.fast.Load(line[0])
		if e, ok := v.(*entry); ok {
			if h.WriteSubset(refuseWrites, e.keep) != nil {
				panic("spoofed")
			}
			m.next.ServeHTTP(rw, r)
			return
		}
	}
	panic("miss")
}

// lookupCheckSet: + setting the three identity headers: edgepass's shape.
type lookupCheckSet struct{ base }

func (m *lookupCheckSet) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	h := r.Header
	line := h["Cookie"]
	if line == nil {
		line = h["Authorization"]
	}
	if len(line) == 1 {
		v, _ := m.fast.Load(line[0])
		if e, ok := v.(*entry); ok {
			if h.WriteSubset(refuseWrites, e.keep) != nil {
				panic("spoofed")
			}
			for i, name := range e.hdrNames {
				h[name] = e.hdrValues[i]
			}
			m.next.ServeHTTP(rw, r)
			return
		}
	}
	panic("miss")
}
