package yaegi_test

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/traefik/yaegi/interp"
	"github.com/traefik/yaegi/stdlib"
)

type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

type nopNext struct{}

func (nopNext) ServeHTTP(http.ResponseWriter, *http.Request) {}

// benchRequest is a typical browser request as Traefik forwards it.
func benchRequest(cookie string) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "http://app.example.com/dashboard?tab=1", nil)
	r.RequestURI = "/dashboard?tab=1"
	r.Header = http.Header{
		"Accept":            {"text/html,application/xhtml+xml"},
		"Accept-Encoding":   {"gzip, deflate, br"},
		"Accept-Language":   {"en-US,en;q=0.9"},
		"User-Agent":        {"Mozilla/5.0 (X11; Linux x86_64)"},
		"X-Forwarded-For":   {"10.0.0.1"},
		"X-Forwarded-Host":  {"app.example.com"},
		"X-Forwarded-Proto": {"https"},
		"X-Real-Ip":         {"10.0.0.1"},
	}
	if cookie != "" {
		r.Header["Cookie"] = []string{"theme=dark; edgepass_session=" + cookie}
	}
	return r
}

var spoofValue = []string{"admin"}

// resetHeaders undoes what the middleware did to r, so one request is reused.
func resetHeaders(r *http.Request, spoofed bool) {
	delete(r.Header, "X-Auth-User")
	delete(r.Header, "X-Auth-Email")
	delete(r.Header, "X-Auth-Groups")
	if spoofed {
		r.Header["X_auth_user"] = spoofValue
	}
}

// BenchmarkYaegiServeHTTP measures the plugin as Traefik runs it (interpreted).
// Compare with BenchmarkServeHTTP in plugin/ (compiled) and BenchmarkYaegiBaseline.
// cpu-ns/op is process CPU time per request (GC included), steadier than ns/op
// on a busy machine.
func BenchmarkYaegiServeHTTP(b *testing.B) {
	p := plugin(b)
	newH := func(b *testing.B) http.Handler {
		h, err := p.newHandler(nopNext{}, baseConfig(), "bench")
		if err != nil {
			b.Fatal(err)
		}
		return h
	}
	w := &nopWriter{h: http.Header{}}
	cached := func(spoofed bool) func(b *testing.B) {
		return func(b *testing.B) {
			h := newH(b)
			r := benchRequest(signed(b, claims()))
			h.ServeHTTP(w, r)
			if r.Header.Get("X-Auth-User") != "alice" {
				b.Fatal("token not accepted")
			}
			b.ReportAllocs()
			ct := startCPU(b)
			for i := 0; i < b.N; i++ {
				resetHeaders(r, spoofed)
				h.ServeHTTP(w, r)
			}
			ct.report(b)
		}
	}
	b.Run("cached", cached(false))
	b.Run("cachedSpoofed", cached(true))
	b.Run("firstSeen", func(b *testing.B) {
		h := newH(b)
		reqs := make([]*http.Request, b.N)
		for i := range reqs {
			c := claims()
			c.SessionID = "bench-session-" + strconv.Itoa(i)
			reqs[i] = benchRequest(signed(b, c))
		}
		b.ReportAllocs()
		ct := startCPU(b)
		for i := 0; i < b.N; i++ {
			h.ServeHTTP(w, reqs[i])
		}
		ct.report(b)
	})
	b.Run("noToken", func(b *testing.B) {
		h := newH(b)
		r := benchRequest("")
		b.ReportAllocs()
		ct := startCPU(b)
		for i := 0; i < b.N; i++ {
			h.ServeHTTP(w, r)
		}
		ct.report(b)
	})
	b.Run("forged", func(b *testing.B) {
		h := newH(b)
		parts := strings.Split(signed(b, claims()), ".")
		reqs := make([]*http.Request, b.N)
		for i := range reqs {
			sig := make([]byte, 64)
			copy(sig, strconv.Itoa(i))
			reqs[i] = benchRequest(parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig))
		}
		b.ReportAllocs()
		ct := startCPU(b)
		for i := 0; i < b.N; i++ {
			h.ServeHTTP(w, reqs[i])
		}
		ct.report(b)
	})
}

// BenchmarkYaegiBaseline is the trivial plugin of DESIGN.md's measurements
// (delete one header, set one, call next) in its own interpreter: the floor the
// cached path is compared with (about 0.9 of no middleware in real Traefik).
func BenchmarkYaegiBaseline(b *testing.B) {
	i := interp.New(interp.Options{})
	if err := i.Use(stdlib.Symbols); err != nil {
		b.Fatal(err)
	}
	if _, err := i.Eval(`
import "net/http"

type edgepassBaseline struct{ next http.Handler }

func (m *edgepassBaseline) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	delete(r.Header, "X_auth_user")
	r.Header["X-Auth-User"] = []string{"alice"}
	m.next.ServeHTTP(rw, r)
}

func edgepassNewBaseline(next http.Handler) http.Handler { return &edgepassBaseline{next: next} }
`); err != nil {
		b.Fatal(err)
	}
	v, err := i.Eval("edgepassNewBaseline")
	if err != nil {
		b.Fatal(err)
	}
	newBaseline := v.Interface().(func(http.Handler) http.Handler)
	h := newBaseline(nopNext{})
	w := &nopWriter{h: http.Header{}}
	r := benchRequest("x")
	b.ReportAllocs()
	ct := startCPU(b)
	for i := 0; i < b.N; i++ {
		resetHeaders(r, false)
		h.ServeHTTP(w, r)
	}
	ct.report(b)
}
