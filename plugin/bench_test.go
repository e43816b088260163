package edgepass

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/edgepass/edgepass/internal/servebench"
)

// BenchmarkServeHTTP measures the middleware compiled; integration/yaegi's
// BenchmarkYaegiServeHTTP runs the same cases interpreted, as Traefik does.
func BenchmarkServeHTTP(b *testing.B) {
	newMW := func(b *testing.B) http.Handler {
		cfg := testConfig()
		cfg.NameHeader, cfg.SubjectHeader = "", ""
		h, err := New(context.Background(), servebench.NopNext{}, cfg, "bench")
		if err != nil {
			b.Fatal(err)
		}
		m := h.(*Middleware)
		m.clock = func() time.Time { return testNow }
		return m
	}
	servebench.Run(b, newMW, testClaims, sign)
}
