package edgepass

import (
	"context"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// nopWriter is a ResponseWriter that allocates nothing, so the benchmark counts
// the middleware's own allocations.
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

func BenchmarkServeHTTP(b *testing.B) {
	newMW := func(b *testing.B) *Middleware {
		cfg := testConfig()
		cfg.NameHeader, cfg.SubjectHeader = "", ""
		h, err := New(context.Background(), nopNext{}, cfg, "bench")
		if err != nil {
			b.Fatal(err)
		}
		m := h.(*Middleware)
		m.clock = func() time.Time { return testNow }
		return m
	}
	w := &nopWriter{h: http.Header{}}
	cached := func(spoofed bool) func(b *testing.B) {
		return func(b *testing.B) {
			m := newMW(b)
			r := benchRequest(sign(b, testClaims()))
			m.ServeHTTP(w, r)
			if r.Header.Get("X-Auth-User") != "alice" {
				b.Fatal("token not accepted")
			}
			b.ReportAllocs()
			ct := startCPU(b)
			for i := 0; i < b.N; i++ {
				resetHeaders(r, spoofed)
				m.ServeHTTP(w, r)
			}
			ct.report(b)
		}
	}
	b.Run("cached", cached(false))
	b.Run("cachedSpoofed", cached(true))
	b.Run("firstSeen", func(b *testing.B) {
		m := newMW(b)
		reqs := make([]*http.Request, b.N)
		for i := range reqs {
			c := testClaims()
			c.SessionID = "bench-session-" + strconv.Itoa(i)
			reqs[i] = benchRequest(sign(b, c))
		}
		b.ReportAllocs()
		ct := startCPU(b)
		for i := 0; i < b.N; i++ {
			m.ServeHTTP(w, reqs[i])
		}
		ct.report(b)
	})
	b.Run("noToken", func(b *testing.B) {
		m := newMW(b)
		r := benchRequest("")
		b.ReportAllocs()
		ct := startCPU(b)
		for i := 0; i < b.N; i++ {
			m.ServeHTTP(w, r)
		}
		ct.report(b)
	})
	b.Run("forged", func(b *testing.B) {
		m := newMW(b)
		parts := strings.Split(sign(b, testClaims()), ".")
		reqs := make([]*http.Request, b.N)
		for i := range reqs {
			sig := make([]byte, 64)
			copy(sig, strconv.Itoa(i))
			reqs[i] = benchRequest(parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig))
		}
		b.ReportAllocs()
		ct := startCPU(b)
		for i := 0; i < b.N; i++ {
			m.ServeHTTP(w, reqs[i])
		}
		ct.report(b)
	})
}
