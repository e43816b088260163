package yaegi_test

import (
	"net/http"
	"testing"

	"github.com/edgepass/edgepass/internal/servebench"
)

// BenchmarkYaegiServeHTTP measures the plugin as Traefik runs it
// (interpreted), on the cases of plugin/'s compiled BenchmarkServeHTTP;
// BenchmarkYaegiFastPathSteps prices the floor under it. cpu-ns/op is process
// CPU time per request (GC included), steadier than ns/op on a busy machine.
func BenchmarkYaegiServeHTTP(b *testing.B) {
	p := plugin(b)
	servebench.Run(b, func(b *testing.B) http.Handler {
		h, err := p.newHandler(servebench.NopNext{}, baseConfig(), "bench")
		if err != nil {
			b.Fatal(err)
		}
		return h
	}, claims, signed)
}
