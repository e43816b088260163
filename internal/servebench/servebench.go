// Package servebench is the request-path benchmark of the plugin, shared by
// its compiled benchmark (plugin/) and its Yaegi one (integration/yaegi), so
// both measure the same requests the same way. Test support only: the plugin
// never imports it.
package servebench

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgepass/edgepass/plugin/token"
)

// NopWriter is a ResponseWriter that allocates nothing, so a benchmark counts
// the middleware's own allocations.
type NopWriter struct{ H http.Header }

func (w *NopWriter) Header() http.Header         { return w.H }
func (w *NopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *NopWriter) WriteHeader(int)             {}

// NopNext is the next handler: it does nothing.
type NopNext struct{}

func (NopNext) ServeHTTP(http.ResponseWriter, *http.Request) {}

// Request is a typical browser request as Traefik forwards it, with the
// session cookie (none when cookie is "").
func Request(cookie string) *http.Request {
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

// ResetHeaders undoes what the middleware did to r, so one request is reused;
// spoofed adds a client-sent identity header in an underscore spelling.
func ResetHeaders(r *http.Request, spoofed bool) {
	delete(r.Header, "X-Auth-User")
	delete(r.Header, "X-Auth-Email")
	delete(r.Header, "X-Auth-Groups")
	if spoofed {
		r.Header["X_auth_user"] = spoofValue
	}
}

// CPUTimer reports process CPU time per operation ("cpu-ns/op"): on a shared,
// busy machine wall-clock ns/op includes waiting for a core, CPU time does not.
type CPUTimer struct{ start time.Duration }

func cpuNow() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// StartCPU resets b's timer and starts counting CPU time.
func StartCPU(b *testing.B) *CPUTimer {
	b.ResetTimer()
	return &CPUTimer{start: cpuNow()}
}

// Report stops b's timer and reports the CPU time per operation.
func (c *CPUTimer) Report(b *testing.B) {
	b.StopTimer()
	b.ReportMetric(float64(cpuNow()-c.start)/float64(b.N), "cpu-ns/op")
}

// Loop runs h over r b.N times, resetting r's headers before each request.
func Loop(b *testing.B, h http.Handler, r *http.Request, spoofed bool) {
	w := &NopWriter{H: http.Header{}}
	b.ReportAllocs()
	ct := StartCPU(b)
	for i := 0; i < b.N; i++ {
		ResetHeaders(r, spoofed)
		h.ServeHTTP(w, r)
	}
	ct.Report(b)
}

// Run benchmarks a middleware built by newHandler (a fresh one per case):
// cached (a session seen before), cachedSpoofed (the same with a spoofed
// identity header), firstSeen (a new session each request: signature check),
// noToken and forged (a new bad signature each request). claims returns a
// valid claim set for alice, sign signs it with a key the middleware trusts.
func Run(b *testing.B, newHandler func(*testing.B) http.Handler, claims func() *token.Claims, sign func(testing.TB, *token.Claims) string) {
	cached := func(spoofed bool) func(b *testing.B) {
		return func(b *testing.B) {
			h := newHandler(b)
			r := Request(sign(b, claims()))
			h.ServeHTTP(&NopWriter{H: http.Header{}}, r)
			if r.Header.Get("X-Auth-User") != "alice" {
				b.Fatal("token not accepted")
			}
			Loop(b, h, r, spoofed)
		}
	}
	// each serves request i in iteration i.
	each := func(b *testing.B, h http.Handler, request func(i int) *http.Request) {
		w := &NopWriter{H: http.Header{}}
		b.ReportAllocs()
		ct := StartCPU(b)
		for i := 0; i < b.N; i++ {
			h.ServeHTTP(w, request(i))
		}
		ct.Report(b)
	}
	b.Run("cached", cached(false))
	b.Run("cachedSpoofed", cached(true))
	b.Run("firstSeen", func(b *testing.B) {
		h := newHandler(b)
		reqs := make([]*http.Request, b.N)
		for i := range reqs {
			c := claims()
			c.SessionID = "bench-session-" + strconv.Itoa(i)
			reqs[i] = Request(sign(b, c))
		}
		each(b, h, func(i int) *http.Request { return reqs[i] })
	})
	b.Run("noToken", func(b *testing.B) {
		r := Request("")
		each(b, newHandler(b), func(int) *http.Request { return r })
	})
	b.Run("forged", func(b *testing.B) {
		h := newHandler(b)
		parts := strings.Split(sign(b, claims()), ".")
		reqs := make([]*http.Request, b.N)
		for i := range reqs {
			sig := make([]byte, 64)
			copy(sig, strconv.Itoa(i))
			reqs[i] = Request(parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig))
		}
		each(b, h, func(i int) *http.Request { return reqs[i] })
	})
}
