package bench

import (
	"strings"
	"testing"
)

func TestParseGoBench(t *testing.T) {
	out := `goos: linux
goarch: amd64
pkg: github.com/edgepass/edgepass/integration/yaegi
cpu: Intel(R) Xeon(R) Processor
BenchmarkYaegiServeHTTP/first-seen-2         	    2316	    512345 ns/op	  40960 B/op	     812 allocs/op
BenchmarkYaegiServeHTTP/cached-2             	  300000	      3921 ns/op	     512 B/op	      14 allocs/op
BenchmarkRevocationPropagation               	     200	   4012345 ns/op	         3.100 p50-ms	         8.200 p99-ms
PASS
ok  	github.com/edgepass/edgepass/integration/yaegi	12.345s
`
	got, err := ParseGoBench(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("got %d results, want 3: %+v", len(got), got)
	}
	if got[0].Name != "BenchmarkYaegiServeHTTP/first-seen" || got[0].Iterations != 2316 || got[0].Metrics["ns/op"] != 512345 || got[0].Metrics["allocs/op"] != 812 {
		t.Errorf("first = %+v", got[0])
	}
	if got[1].Name != "BenchmarkYaegiServeHTTP/cached" || got[1].Metrics["ns/op"] != 3921 {
		t.Errorf("second = %+v", got[1])
	}
	if got[2].Name != "BenchmarkRevocationPropagation" || got[2].Metrics["p99-ms"] != 8.2 || got[2].Metrics["p50-ms"] != 3.1 {
		t.Errorf("third = %+v", got[2])
	}

	if _, err := ParseGoBench("BenchmarkX-2  10  12 ns/op 7\n"); err == nil || !strings.Contains(err.Error(), "pairs") {
		t.Errorf("odd metric fields: err = %v", err)
	}
	if _, err := ParseGoBench("BenchmarkX-2  10  1x2 ns/op\n"); err == nil {
		t.Error("bad value accepted")
	}
	if got, _ := ParseGoBench("--- FAIL: BenchmarkX\nFAIL\n"); len(got) != 0 {
		t.Errorf("non-result lines parsed: %+v", got)
	}
}
