package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDemoStopsCleanlyOnCtrlC: `make demo` must end without make's "Error 1"
// when the user presses Ctrl-C. The demo exits 0 on SIGINT, but `go run`
// exits 1 whenever its program was interrupted, so the recipe must build the
// demo and run the binary.
func TestDemoStopsCleanlyOnCtrlC(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^demo:.*\n((?:\t.*\n)+)`).FindSubmatch(data)
	if m == nil {
		t.Fatal("Makefile has no demo target")
	}
	recipe := string(m[1])
	if strings.Contains(recipe, " run ") {
		t.Errorf("the demo recipe uses go run, which exits 1 on Ctrl-C:\n%s", recipe)
	}
	if !strings.Contains(recipe, "./cmd/demo") {
		t.Errorf("the demo recipe does not build integration/cmd/demo:\n%s", recipe)
	}
}
