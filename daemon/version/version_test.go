package version

import (
	"strings"
	"testing"
)

func TestLinkFlagsWin(t *testing.T) {
	old, oldC := Version, Commit
	t.Cleanup(func() { Version, Commit = old, oldC })
	Version, Commit = "v1.2.3", "0123456789ab"
	i := Get()
	if i.Version != "v1.2.3" || i.Commit != "0123456789ab" || i.Go == "" {
		t.Fatalf("Get = %+v", i)
	}
	if s := i.String(); !strings.HasPrefix(s, "edgepass v1.2.3 (0123456789ab) go") {
		t.Fatalf("String = %q", s)
	}
	Version, Commit = "dev", ""
	if s := Get().String(); !strings.HasPrefix(s, "edgepass ") {
		t.Fatalf("String without link flags = %q", s)
	}
}
